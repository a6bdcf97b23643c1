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
from polytask.learning.policies.base import Policy
from polytask.learning.policies.expert import load_policy
from polytask.learning.policies.multitask import load_multitask_policy
from polytask.learning.policies.progressive import load_progressive_policy
from polytask.learning.policies.student import load_student_policy


@dataclass(frozen=True)
class LoadedCheckpoint:
    policy: Policy
    kind: str
    tasks: list[str]  # the tasks the policy was trained on (one for an expert)
    pixels: bool  # the policy reads 84x84 frames, so evaluation must render
    unified: bool  # one policy for many tasks, conditioned on the task's goal

    def check_task(self, task: str, where: str) -> None:
        """A unified policy acts only on tasks it was taught (it holds no goal for any other)."""
        if self.unified and task not in self.tasks:
            raise ValueError(f"checkpoint {where!r} is a unified policy of {sorted(self.tasks)}; it was not "
                             f"taught task {task!r}")


def _expert(path: Path, device: str, header: dict[str, Any]) -> LoadedCheckpoint:
    policy = load_policy(path, device=device)
    task = str(header.get("task", ""))
    return LoadedCheckpoint(policy, "expert", [task] if task else [], policy.spec.obs_modality == "pixels", False)


def _student(path: Path, device: str, header: dict[str, Any]) -> LoadedCheckpoint:
    policy = load_student_policy(path, device)
    return LoadedCheckpoint(policy, "student", list(policy.tasks), policy.spec.obs == "pixels", True)


def _multitask_rl(path: Path, device: str, header: dict[str, Any]) -> LoadedCheckpoint:
    policy = load_multitask_policy(path, device)
    return LoadedCheckpoint(policy, "multitask-rl", policy.tasks, policy.spec.obs_modality == "pixels", True)


def _progressive(path: Path, device: str, header: dict[str, Any]) -> LoadedCheckpoint:
    if device != "cpu":
        raise ValueError(f"{path}: progressive nets evaluate on the CPU only (got device {device!r})")
    policy = load_progressive_policy(path)
    return LoadedCheckpoint(policy, str(header["kind"]), list(policy.columns), False, True)


LOADERS: dict[str, Callable[[Path, str, dict[str, Any]], LoadedCheckpoint]] = {
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
    return LOADERS[kind](path, str(device), header)
