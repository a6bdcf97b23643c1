"""Labels from a stateful teacher, taken while acting: the teacher labels every state it is shown, as it goes.

Why: relabelling (learning/distill/relabel.py) hands each stored state back to a teacher that is a function of
the state. A scripted controller with a plan (the Kitchen waypoint experts: a waypoint index, step budgets,
anchors frozen when a waypoint starts) is not: its action depends on the episode so far, so it must run alongside
the episode and label each state as it is visited. `expert_action` then holds its clean action at every state,
the last one included, exactly where relabelling would have written it.

- `LabellingTeacher`: the teacher acting with Gaussian noise, its clean action the label (DART-style
  exploration around the teacher's own visits).
- `DaggerPolicy`: a student acting, the teacher labelling alongside (DAgger; with probability `beta` per step the
  teacher's action is executed instead).
- `before_teacher_gave_up`: a student-driven episode cut where the teacher's plan ran out of steps short of a
  waypoint, after which its labels follow the plan on time rather than what the hand did.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polytask.learning.data.episodes import Episode
from polytask.learning.policies.base import ScriptedPolicy
from polytask.learning.policies.rollout import rollout
from polytask.sim.task import Step, Task


def teacher_label(task: Task, step: Step, labels: list[np.ndarray]) -> np.ndarray:
    """The task's scripted action for `step`, clipped to the action box, appended to `labels`."""
    clean = np.clip(np.asarray(task.scripted_action(step), np.float32), -1.0, 1.0)
    labels.append(clean)
    return clean


class LabellingTeacher(ScriptedPolicy):
    """The scripted teacher acting with noise, remembering its clean action at every state it is asked about."""

    def __init__(self, task: Task, noise_std: float, rng: np.random.Generator) -> None:
        super().__init__(task, noise_std=noise_std, rng=rng)
        self.labels: list[np.ndarray] = []

    def reset(self, step: Step) -> None:
        self.labels = []

    def label(self, step: Step) -> np.ndarray:
        return teacher_label(self.task, step, self.labels)

    def act(self, step: Step) -> np.ndarray:
        clean = self.label(step)
        noisy = clean + self.rng.normal(0.0, self.noise_std, size=clean.shape).astype(np.float32)
        return np.clip(noisy, -1.0, 1.0) if self.noise_std > 0 else clean


class DaggerPolicy:
    """The student acting, the scripted teacher labelling every visited state (its clean action) alongside; at a
    step with probability `beta` the teacher's label is executed instead (DAgger's mixture policy)."""

    def __init__(self, task: Task, student: Any, beta: float, rng: np.random.Generator) -> None:
        self.task, self.student, self.beta, self.rng = task, student, beta, rng
        self.inputs = student.inputs
        self.labels: list[np.ndarray] = []

    def reset(self, step: Step) -> None:
        self.labels = []
        self.student.reset(step)

    def label(self, step: Step) -> np.ndarray:
        return teacher_label(self.task, step, self.labels)

    def act(self, step: Step) -> np.ndarray:
        clean = self.label(step)
        acted = np.asarray(self.student.act(step), np.float32)
        return clean if self.rng.random() < self.beta else acted


def before_teacher_gave_up(ep: Episode, task: Task) -> Episode:
    """`ep` cut where the teacher's plan ran out of steps short of a waypoint (the student did not get the hand
    there): from then on its waypoint machine follows its plan on time, not on what the hand did, and its labels
    (lift an ungrasped kettle, back off a shut cabinet) stop being corrections. The whole episode when it never
    gave up."""
    k = getattr(getattr(task, "scripted_expert", None), "gave_up_at", None)
    if k is None or k >= len(ep):
        return ep
    t = max(int(k) - 1, 1)  # label k already follows the next waypoint: states 0..k-1 kept, with their labels
    ep.extra.update(cut_at=t, steps_played=len(ep))
    ep.state, ep.expert_action = ep.state[: t + 1], ep.expert_action[: t + 1]
    ep.action, ep.reward, ep.success = ep.action[:t], ep.reward[:t], ep.success[:t]
    return ep


def labelled_rollout(task: Task, policy: LabellingTeacher | DaggerPolicy, seed: int) -> Episode:
    """One episode of `policy` whose `expert_action` holds the teacher's clean label at every state, the last
    state's included."""
    ep = rollout(task, policy, seed=seed, source="relabelled", keep_pixels=False)
    last = Step(
        state=ep.state[-1], pixels=None, reward=0.0, success=False, terminal=False, truncated=False, goal=task.goal
    )
    policy.label(last)
    ep.expert_action = np.stack(policy.labels).astype(np.float32)
    return ep
