"""K per-task experts trained in lockstep in one process, with ONE batched update (rl/batched.py) for all of them.

Why: on a GPU one expert's update is launch-bound at the paper's sizes; K experts' updates stacked cost about the
launches of one. Each expert stays an ordinary `ExpertTrainer` run: its own run folder, task, demos, replay, goal,
reward hook, logs, checkpoints (`expert.safetensors` loads into the single-expert policy as today) and exact
resume. This driver only steps the runs with the loop's own pieces (rl/loop.py: `start_episode`, `send_step`,
`receive_step`, `end_episode`) and, where each run would update its learner, samples every expert's batch
(`AgentLearner.sample`) and runs one `BatchedExperts.update`. The agents' parameters are views of the stacked
tensors (`share_weights`), so acting, the OT reward's encoder, evaluation and checkpoints see the current
weights without copies; the stacked Adam moments are written back before each episode's end (where checkpoints
land).

RNG: each run keeps its own torch / numpy / Python RNG state, swapped in whenever the driver does something of that
run's that draws (`_as(k)`: acting, BC pretraining, episode ends), and the batched update draws expert k's
augmentation shifts and action noise inside run k's state.
Every random number of a run is therefore the one its single-expert run draws: the batched run equals K single
runs up to the summation order of the batched kernels (tests/test_batched_run.py), and each run's checkpoint
holds its own RNG state, so a killed batched run resumes exactly (every run from its own checkpoint).

Lockstep: the experts share the loop's settings (steps, seed frames, update cadence, the agent section) and
their tasks the episode length and action repeat, so their episodes, updates, evaluations and checkpoints fall on
the same steps; anything else is refused up front, and an episode that ends early (a terminal state) is an error
naming the task. With `train.env_workers` > 0 each run's task steps in a worker process while the batched update
runs (sim/env_workers.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.learning.rl.batched import BatchedExperts
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.fast_update import LazyMetrics, draw_noise
from polytask.learning.rl.learners import AgentLearner

log = logging.getLogger(__name__)

LOCKSTEP_KEYS = ("steps", "seed_frames", "eval_every", "save_every", "device")


def _rng_state(device: torch.device) -> tuple[Any, ...]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), np.random.get_state(), random.getstate(), cuda


def _set_rng_state(state: tuple[Any, ...], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state(state[3], device)


def check_lockstep(runs: Sequence[ExpertTrainer]) -> None:
    """Refuse runs that cannot step together, naming the first difference."""
    if not runs:
        raise ValueError("batched experts: no runs")
    first = runs[0]
    names = [r.names[0] for r in runs]
    folders = [str(r.run_dir) for r in runs]
    if len(set(folders)) != len(folders):
        raise ValueError(f"batched experts: runs share a run folder: {folders}")
    for r in runs[1:]:
        what = r.names[0]
        for key in LOCKSTEP_KEYS:
            if getattr(r.cfg.train, key) != getattr(first.cfg.train, key):
                raise ValueError(
                    f"batched experts: train.{key} of {what} is {getattr(r.cfg.train, key)!r}, of "
                    f"{names[0]} {getattr(first.cfg.train, key)!r}; batched runs step together"
                )
        if r.cfg.agent != first.cfg.agent:
            raise ValueError(f"batched experts: the agent section of {what} differs from {names[0]}'s")
        a, b = r.task.spec, first.task.spec
        if (a.horizon, a.action_repeat) != (b.horizon, b.action_repeat):
            raise ValueError(
                f"batched experts: {what} runs {a.horizon} steps x {a.action_repeat} per episode, "
                f"{names[0]} {b.horizon} x {b.action_repeat}; batched episodes must end together"
            )
        if r.spec != first.spec:
            raise ValueError(
                f"batched experts: {what}'s network differs from {names[0]}'s: "
                f"{'; '.join(r.spec.differences(first.spec))}"
            )
    for r in runs:
        if not isinstance(r.learner, AgentLearner):
            raise ValueError(f"batched experts: {r.names[0]} has a {type(r.learner).__name__} learner")
    steps = {r.names[0]: r.state.step for r in runs}
    if len(set(steps.values())) != 1:
        raise ValueError(
            f"batched experts: the runs resume at different steps {steps} (a kill between their "
            "checkpoints); continue the lagging ones alone with `polytask train-expert --resume`"
        )


class BatchedExpertRun:
    """K expert runs in lockstep. `builders` make the runs (each e.g. `ExpertTrainer.open(cfg, run_dir)`, which
    resumes a run folder holding a checkpoint); `mode` is the batched update's ("none" eager, "graph" one CUDA
    graph on a GPU)."""

    def __init__(self, builders: Sequence[Callable[[], ExpertTrainer]], mode: str = "none") -> None:
        self.runs: list[ExpertTrainer] = []
        self._rng: list[tuple[Any, ...]] = []
        try:
            for build in builders:
                run = build()  # seeds (or, resumed, restores) the global RNGs as its own process would
                self.runs.append(run)
                self._rng.append(_rng_state(run.device))
            check_lockstep(self.runs)
        except Exception:
            self.close()
            raise
        self.mode = mode
        self.device = self.runs[0].device
        self.batched: BatchedExperts | None = None
        self._current: int | None = None

    @property
    def names(self) -> list[str]:
        return [r.names[0] for r in self.runs]

    @contextmanager
    def _as(self, k: int) -> Iterator[ExpertTrainer]:
        """Run k's RNG state in force (and kept afterwards): whatever runs inside draws what run k would draw."""
        if self._current is not None:
            raise RuntimeError("batched experts: RNG scopes do not nest")
        _set_rng_state(self._rng[k], self.device)
        self._current = k
        try:
            yield self.runs[k]
        finally:
            self._rng[k] = _rng_state(self.device)
            self._current = None

    def run(self) -> list[dict[str, Any]]:
        """Every run's pretraining and first evaluation, the lockstep RL loop, every run's final evaluation and
        checkpoint; returns the runs' summaries (as `ExpertTrainer.run` does for one)."""
        try:
            summaries = self.begin()
            self.train()
            assert self.batched is not None
            self.batched.write_back()
            out = []
            for k, summary in enumerate(summaries):
                with self._as(k) as r:
                    out.append(r.conclude(summary))
            return out
        finally:
            for r in self.runs:
                r.logger.plot_curves()
                r.logger.flush()

    def begin(self) -> list[dict[str, Any]]:
        """Every run's BC pretraining and first evaluation (`OnlineRL.begin`), then the K agents stacked."""
        summaries = []
        for k in range(len(self.runs)):
            with self._as(k) as r:
                summaries.append(r.begin())
        self.batched = BatchedExperts([r.agent for r in self.runs], mode=self.mode, share_weights=True)
        return summaries

    def train(self) -> None:
        """The lockstep loop: every run sends its step, the one batched update runs while the steps are in
        flight, every run receives its step; at the episodes' end each run stores, logs, evaluates and saves."""
        assert self.batched is not None
        for k in range(len(self.runs)):
            with self._as(k) as r:
                r.begin_training()
        try:
            while not self.runs[0].finished:
                for k in range(len(self.runs)):
                    with self._as(k) as r:
                        r.start_episode()
                while self._playing():
                    due = []
                    for k in range(len(self.runs)):
                        with self._as(k) as r:
                            due.append(r.send_step())
                    if any(due):
                        if not all(due):
                            raise RuntimeError(
                                f"batched experts: an update is due for {self._which(due)} only "
                                "(a run without replay yet); batched runs update together"
                            )
                        self._update()
                    for r in self.runs:  # draws nothing: no RNG swap
                        r.receive_step()
                self.batched.write_back()  # the Adam moments, for the checkpoints that land here
                for k in range(len(self.runs)):
                    with self._as(k) as r:
                        r.end_episode()
        finally:
            for r in self.runs:
                r.end_training()

    def _which(self, flags: Sequence[bool]) -> list[str]:
        return [n for n, f in zip(self.names, flags, strict=True) if f]

    def _playing(self) -> bool:
        playing = [r.playing for r in self.runs]
        if any(playing) and not all(playing):
            raise RuntimeError(
                f"batched experts: the episodes of {self._which([not p for p in playing])} ended "
                f"at step {self.runs[0].state.step} and the others' did not (a terminal state); "
                "batched runs need episodes that end together: train these experts alone"
            )
        return all(playing)

    def _update(self) -> None:
        assert self.batched is not None
        # each replay buffer samples with its own generator (no RNG swap needed)
        samples = [r.learner.sample(r.data, r.names[0]) for r in self.runs]  # type: ignore[attr-defined]
        demos = [d for _, d in samples]
        pad = self.runs[0].cfg.agent.aug_pad

        def draw(k: int, buffers: dict[str, Tensor]) -> None:
            with self._as(k):
                draw_noise(buffers, pad)

        metrics = self.batched.update(
            [b for b, _ in samples],
            None if demos[0] is None else demos,  # type: ignore
            [r.state.step for r in self.runs],
            draw,
        )
        drop = () if demos[0] is not None else ("bc_loss",)
        for k, r in enumerate(self.runs):
            r.record_update(LazyMetrics(metrics[k], drop=drop))  # type: ignore[arg-type]

    def close(self) -> None:
        for r in self.runs:
            r.close()


def train_batched_experts(builders: Sequence[Callable[[], ExpertTrainer]], mode: str = "none") -> list[dict[str, Any]]:
    driver = BatchedExpertRun(builders, mode)
    try:
        return driver.run()
    finally:
        driver.close()
