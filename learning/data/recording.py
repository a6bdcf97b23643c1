"""The record flow of a demonstration (LeRobot's, on joystick buttons), without ROS: what the teleop recorder node
drives from its buttons and its tick, and what a test drives directly.

States: `idle` -> (`resetting`, while the robot resets) -> `recording` -> `saving` -> `idle`. `start` begins an
episode, `record` adds one tick (the frame and state observed, the action sent), `finish` ends it: the observation
after the last action is added and the episode written to the store; a failed write (disk full) keeps the episode
in memory, and `finish` again retries. `discard` throws the attempt away (redo, cancel). Frames go through the one
frame-preprocessing function (`polytask.sim.frames.prepare_frame`) that the policy server and the simulated suites
use, so demonstrations are stored exactly as a deployed policy will see the camera. Episodes are built by
`EpisodeRecorder`, like every other episode of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from polytask.learning.data.episodes import EpisodeError, EpisodeStore
from polytask.learning.data.recorder import EpisodeRecorder
from polytask.sim.frames import prepare_frame
from polytask.sim.task import Goal, Step

IDLE, RESETTING, RECORDING, SAVING = "idle", "resetting", "recording", "saving"


class Observation(NamedTuple):
    """What the recorder observed at one tick: the frame (as `RecordingSession.frame` returns it), the task's
    state vector, and the task's success signal where the robot reports one (a simulated task; None otherwise)."""

    frame: np.ndarray
    state: np.ndarray
    success: bool | None = None


@dataclass
class SaveOutcome:
    """What `finish` did: the file written, or why not (`retry`: the episode is kept and `finish` may be called
    again; otherwise it is gone)."""

    path: Path | None = None
    error: str = ""
    retry: bool = False


@dataclass
class RecordingSession:
    """One recorder's episodes of `task` into `store`; frames are stored at image_size x image_size."""

    store: EpisodeStore
    task: str
    task_id: int
    image_size: int
    extra: dict[str, Any] = field(default_factory=dict)  # noted in every episode (e.g. the recording rate)
    state: str = IDLE
    counters: dict[str, int] = field(default_factory=lambda: {"saved": 0, "discarded": 0, "save_errors": 0})

    def __post_init__(self) -> None:
        self._goal = Goal(task_id=self.task_id, name=self.task)
        self._rec: EpisodeRecorder | None = None
        self._pending: np.ndarray | None = None  # the action of the latest tick, whose outcome is not yet observed
        self._finished = False  # the final observation is in: nothing more is recorded
        self._judged = False  # the robot reported the task's success signal during this episode

    @property
    def steps(self) -> int:
        return 0 if self._rec is None else len(self._rec) + int(self._pending is not None)

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        """A camera frame as it is stored (and as the policy server feeds it to a policy)."""
        return prepare_frame(rgb, self.image_size)

    def start(self, reset: bool) -> None:
        """Begin an episode; with `reset`, recording waits for `reset_finished(True)`."""
        self._clear()
        self.state = RESETTING if reset else RECORDING

    def reset_finished(self, ok: bool) -> None:
        if self.state == RESETTING:
            self._clear()
            self.state = RECORDING if ok else IDLE

    def record(self, frame: np.ndarray, state: np.ndarray, action: np.ndarray, success: bool | None = None) -> None:
        """One tick while recording: the observation (a frame as `frame()` returns it, the task state, the task's
        success signal if any) and the action sent after it."""
        if self.state != RECORDING:
            raise RuntimeError(f"record while {self.state}")
        step = self._step(Observation(frame, state, success))
        if self._rec is None:
            self._rec = EpisodeRecorder(step)
        else:
            self._rec.add(self._pending, step)
        self._pending = np.asarray(action, dtype=np.float32)

    def finish(self, final: tuple | None) -> SaveOutcome:
        """End the episode (state `saving`: nothing more is recorded) with `final`, the `Observation` (or a
        (frame, state) pair) after the last action, and write it. Without a fresh final observation yet (`final`
        None) the episode waits in `saving`; call again. Once the final observation is in, a retry after a failed
        write ignores `final`.

        The verdict: where the robot reported the task's success signal, the task's success at the final
        observation (a simulated task's own rule); otherwise the operator's, who saved it as a demonstration."""
        if self.steps == 0:
            self.discard()
            self.state = IDLE
            return SaveOutcome(error="save pressed on an episode with no recorded steps; discarded")
        self.state = SAVING
        if not self._finished:
            if final is None:
                return SaveOutcome(error="waiting for a fresh image and robot state for the final observation",
                                   retry=True)
            self._rec.add(self._pending, self._step(Observation(*final)))  # type: ignore[union-attr]
            self._pending, self._finished = None, True
        rec = self._rec
        assert rec is not None  # steps > 0
        shapes = sorted({s.shape for s in rec.states})
        if len(shapes) != 1:
            self.discard()
            self.state = IDLE
            return SaveOutcome(error=f"the robot state changed size during the episode ({shapes}); episode discarded")
        verdict = rec.last.success if self._judged else True
        episode = rec.to_episode(self.task, self.task_id, source="teleop", episode_success=verdict,
                                 score=float(verdict), extra={**self.extra, "judged_by": "task" if self._judged
                                                              else "operator"})
        if verdict and episode.pixels is not None:  # a task's goal image: a successful demo's last frame, as for
            episode.goal_pixels = episode.pixels[-1].copy()  # scripted demos (polytask.learning.policies.demos)
        try:
            path = self.store.append(episode)
        except (OSError, EpisodeError) as err:
            self.counters["save_errors"] += 1
            return SaveOutcome(error=f"saving the episode failed ({err}); it is kept in memory, press save to retry",
                               retry=True)
        self.counters["saved"] += 1
        self._clear()
        self.state = IDLE
        return SaveOutcome(path=path)

    @property
    def waiting_for_final(self) -> bool:
        """`saving`, and the observation after the last action has not come in yet."""
        return self.state == SAVING and not self._finished

    def discard(self) -> int:
        """Throw the current attempt away (redo / cancel); returns the steps lost (counted when any)."""
        lost = self.steps
        if lost or self.state in (RECORDING, SAVING):
            self.counters["discarded"] += 1
        self._clear()
        return lost

    def _clear(self) -> None:
        self._rec, self._pending, self._finished, self._judged = None, None, False, False

    def _step(self, obs: Observation) -> Step:
        self._judged = self._judged or obs.success is not None
        return Step(state=np.asarray(obs.state, dtype=np.float32), pixels=np.asarray(obs.frame, dtype=np.uint8),
                    reward=0.0, success=bool(obs.success), terminal=False, truncated=False, goal=self._goal)
