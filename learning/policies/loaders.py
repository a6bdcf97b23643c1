"""Every kind of policy checkpoint behind one call: the header's `kind` picks the loader.

`polytask eval`, `polytask record-demos --policy` and the policy server all act with whatever the project
trains — a per-task expert, a distilled student, a multi-task RL baseline, a progressive net (BC- or
RL-trained) — so they ask this registry instead of growing an `if kind == ...` ladder each. The header is read
(and the file validated as safetensors + JSON, never a pickle) before any weights are built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.learning.data.checkpoint import CheckpointError, read_header
from polytask.learning.policies.base import Policy, ScriptedPolicy
from polytask.learning.policies.expert import load_policy
from polytask.learning.policies.multitask import load_multitask_policy
from polytask.learning.policies.progressive import load_progressive_policy
from polytask.learning.policies.student import load_student_policy
from polytask.sim import registry
from polytask.sim.task import TaskSpec


@dataclass(frozen=True)
class LoadedCheckpoint:
    policy: Policy
    kind: str

    @property
    def tasks(self) -> list[str]:
        """The tasks the policy was trained on (one for an expert)."""
        return list(self.policy.inputs.tasks)

    @property
    def pixels(self) -> bool:
        """The policy reads camera frames, so evaluation must render."""
        return self.policy.inputs.pixels

    @property
    def unified(self) -> bool:
        return self.policy.inputs.unified

    def check_task(self, task: str, where: str) -> None:
        """A task the policy cannot act in is refused, naming why (not taught, or other sizes)."""
        self.policy.inputs.check_task(registry.spec(task), f"checkpoint {where!r}")


def _expert(path: Path, device: str, header: dict[str, Any]) -> Policy:
    return load_policy(path, device=device)


def _student(path: Path, device: str, header: dict[str, Any]) -> Policy:
    return load_student_policy(path, device)


def _multitask_rl(path: Path, device: str, header: dict[str, Any]) -> Policy:
    return load_multitask_policy(path, device)


def _progressive(path: Path, device: str, header: dict[str, Any]) -> Policy:
    if device != "cpu":
        raise ValueError(f"{path}: progressive nets evaluate on the CPU only (got device {device!r})")
    return load_progressive_policy(path)


LOADERS: dict[str, Callable[[Path, str, dict[str, Any]], Policy]] = {
    "expert": _expert,
    "student": _student,
    "multitask-rl": _multitask_rl,
    "progressive": _progressive,
    "progressive-rl": _progressive,
}


def load_any_policy(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """The policy in `path`, whatever kind of checkpoint it is; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    header = read_header(path)
    kind = header.get("kind")
    if kind not in LOADERS:
        raise CheckpointError(f"{path}: checkpoint kind {kind!r} is not a policy; known kinds: {', '.join(LOADERS)}")
    return LoadedCheckpoint(LOADERS[kind](path, str(device), header), str(kind))


SCRIPTED = "scripted"  # `scripted` or `scripted:<task>`: a task's scripted expert instead of a checkpoint


@dataclass
class TaskPolicy:
    """A policy made ready for one task (what the policy server serves): checked against the task's spec, with
    what reports describe it by, and what to release when it is replaced."""

    policy: Policy
    checkpoint: str
    kind: str  # "scripted" or the checkpoint's kind
    spec: TaskSpec  # the task the policy is conditioned on
    closer: Callable[[], None] | None = None

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


def policy_for_task(checkpoint: str, task: str, device: str = "cpu") -> TaskPolicy:
    """`checkpoint` (any policy kind, or `scripted` / `scripted:<task>`) ready to act in `task`; a task the policy
    cannot act in (not taught, other action or state size) is refused, naming why."""
    if checkpoint == SCRIPTED or checkpoint.startswith(SCRIPTED + ":"):
        name = checkpoint.split(":", 1)[1] if ":" in checkpoint else task
        sim = registry.make(name, render=False)  # the expert reads the state it is given, not this simulator's
        return TaskPolicy(ScriptedPolicy(sim), checkpoint, SCRIPTED, sim.spec, closer=sim.close)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist (expected a file, or `{SCRIPTED}`)")
    loaded = load_any_policy(checkpoint, device)  # validates the file (safetensors + JSON) before building anything
    spec = registry.spec(task)
    loaded.policy.inputs.check_task(spec, f"checkpoint {checkpoint!r}")
    return TaskPolicy(loaded.policy, checkpoint, loaded.kind, spec)
