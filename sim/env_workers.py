"""Environment workers: tasks that step and render in subprocesses while the learner updates.

Why: on a GPU machine the simulator, not the learner, bounds pixel training once the update is fast (a Meta-World
step with its 84x84 render takes ~1-4 ms); stepping it in another process while the update runs takes it off the
critical path, and K experts' tasks in K processes step in parallel. `RemoteTask` is a `Task` whose simulator
lives in a worker process: `step_async(action)` sends the action and returns at once, the returned call waits
for the step. The training loop always goes through `step_async`, so the same loop runs in-process tasks (which
step inside `step_async`) and remote ones.

A worker is started with the `spawn` method (no forked copy of the learner's threads, CUDA context or OpenGL
state), imports only the simulator side and makes its tasks through the registry, so an episode played through a
worker is the episode played in process for the same seeds (tests/test_env_workers.py). Rendering in a worker uses
the machine's settings (`sim/mujoco_render.worker_render_env`: EGL off-screen, on the GPU where there is one, else
Mesa's llvmpipe on the CPU with each worker's share of the cores) and the `render_quality` asked for ("fast" by
default: no shadows, reflections or multisampling).

A spawned worker re-imports the parent's main module, so the program must be a file or a module (`polytask ...`,
`python script.py`, pytest), not code piped into `python -`.

Errors: an exception inside the worker comes back as `EnvWorkerError` with the worker's traceback; a worker that
dies (killed, segfault in the simulator) is noticed within `poll_s` and named with its exit code. `close()` asks
the worker to close its tasks and exit, then terminates it if it does not within `join_s`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from polytask.sim.mujoco_render import worker_render_env
from polytask.sim.task import Step, Task, TaskSpec


class EnvWorkerError(RuntimeError):
    """An environment worker failed: an exception in its simulator, or the process died."""


def _serve(conn: Any, names: Sequence[str], render: bool, quality: str, env: Mapping[str, str]) -> None:
    """The worker's loop: make the tasks, then answer (op, task, arg) requests until told to close."""
    os.environ.update(env)
    from polytask.sim import registry  # after the environment: MuJoCo reads MUJOCO_GL when imported

    tasks: dict[str, Task] = {}
    try:
        for name in names:
            tasks[name] = registry.make(name, render=render, quality=quality)
        conn.send(("ok", {n: t.spec for n, t in tasks.items()}))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    try:
        while True:
            op, name, arg = conn.recv()
            if op == "close":
                break
            try:
                task = tasks[name]
                if op == "reset":
                    step = task.reset(seed=arg)
                elif op == "step":
                    step = task.step(arg)
                elif op == "goal_image":
                    task.set_goal_image(arg)
                    conn.send(("ok", None))
                    continue
                else:
                    raise ValueError(f"unknown request {op!r}")
                conn.send(("ok", (step, task.score(), task.episode_success())))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass  # the parent went away: close the tasks and exit
    finally:
        for task in tasks.values():
            task.close()
        conn.close()


class EnvWorker:
    """One subprocess holding one or more tasks; requests go one at a time per worker."""

    def __init__(
        self,
        names: Sequence[str],
        render: bool,
        quality: str,
        env: Mapping[str, str] | None = None,
        poll_s: float = 0.5,
        start_timeout_s: float = 300.0,
        join_s: float = 10.0,
    ) -> None:
        self.names, self.poll_s, self.join_s = list(names), poll_s, join_s
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve,
            args=(child, self.names, render, quality, dict(env or os.environ)),
            name=f"env-worker[{','.join(self.names)}]",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self._busy, self._closed = False, False
        self.start_timeout_s = start_timeout_s
        self.specs: dict[str, TaskSpec] = {}

    def wait_ready(self) -> EnvWorker:
        """Wait until the worker has made its tasks (their specs come back)."""
        if not self.specs:
            self.specs = self._wait(self.start_timeout_s)
        return self

    def __repr__(self) -> str:
        return f"env worker pid {self.proc.pid} ({', '.join(self.names)})"

    def request(self, op: str, name: str, arg: Any = None) -> None:
        if self._busy:
            raise EnvWorkerError(f"{self}: a request is already in flight (wait for its answer first)")
        try:
            self.conn.send((op, name, arg))
        except (BrokenPipeError, ConnectionResetError, OSError) as err:
            raise self._died(f"could not send {op!r}") from err
        self._busy = True

    def answer(self) -> Any:
        """Wait for the answer of the request in flight."""
        self._busy = False
        return self._wait(None)

    def _wait(self, timeout_s: float | None) -> Any:
        waited = 0.0
        while True:
            try:
                if self.conn.poll(self.poll_s):
                    status, value = self.conn.recv()
                    break
            except (EOFError, ConnectionResetError, OSError) as err:
                raise self._died("lost its pipe") from err
            waited += self.poll_s
            if not self.proc.is_alive():
                raise self._died("stopped")
            if timeout_s is not None and waited >= timeout_s:
                raise EnvWorkerError(f"{self}: no answer within {timeout_s:.0f} s")
        if status == "error":
            raise EnvWorkerError(f"{self} failed:\n{value}")
        return value

    def _died(self, what: str) -> EnvWorkerError:
        self.proc.join(timeout=1.0)
        code = self.proc.exitcode
        how = f"exit code {code}" if code is not None and code >= 0 else f"killed by signal {-code}" if code else "?"
        return EnvWorkerError(
            f"{self} {what}: the process died ({how}); its tasks cannot go on, restart the run "
            f"(a run with checkpoints resumes from the last one)"
        )

    def close(self) -> None:
        """Ask the worker to exit; terminate it if it does not within `join_s` seconds. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.proc.is_alive():
            try:
                if self._busy:
                    self.conn.poll(self.join_s)
                self.conn.send(("close", "", None))
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass
            self.proc.join(timeout=self.join_s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=self.join_s)
        self.conn.close()


class RemoteTask(Task):
    """A task stepping in an `EnvWorker`: the `Task` interface, with `step_async` overlapping the step."""

    def __init__(self, worker: EnvWorker, name: str, render: bool) -> None:
        super().__init__(worker.specs[name], render)
        self.worker, self.name = worker, name
        self._score, self._success = 0.0, False

    def _reset(self, seed: int | None) -> np.ndarray:
        raise NotImplementedError("a remote task resets in its worker")

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        raise NotImplementedError("a remote task steps in its worker")

    def _render(self) -> np.ndarray:
        raise NotImplementedError("a remote task renders in its worker")

    def _take(self, answer: tuple[Step, float, bool]) -> Step:
        step, self._score, self._success = answer
        return step

    def reset(self, seed: int | None = None) -> Step:
        self.worker.request("reset", self.name, seed)
        step = self._take(self.worker.answer())
        self._t, self._episode_return = 0, 0.0
        return step

    def step_async(self, action: np.ndarray) -> Callable[[], Step]:
        from polytask.sim.task import validate_action

        self.worker.request("step", self.name, validate_action(action, self.spec))

        def wait() -> Step:
            step = self._take(self.worker.answer())
            self._t += 1
            self._episode_return += step.reward
            return step

        return wait

    def step(self, action: np.ndarray) -> Step:
        return self.step_async(action)()

    def set_goal_image(self, image: np.ndarray | None) -> None:
        super().set_goal_image(image)
        self.worker.request("goal_image", self.name, image)
        self.worker.answer()

    def score(self) -> float:
        return self._score

    def episode_success(self) -> bool:
        return self._success

    def close(self) -> None:
        """Closes the worker (and with it any other task it holds)."""
        self.worker.close()


def start_workers(names: Sequence[str], workers: int, render: bool, quality: str) -> dict[str, RemoteTask]:
    """`names` spread round-robin over `min(workers, len(names))` worker processes, started in parallel."""
    n = max(1, min(workers, len(names)))
    groups = [list(names[i::n]) for i in range(n)]
    env = worker_render_env(n)
    started: list[EnvWorker] = []
    try:
        for group in groups:
            started.append(EnvWorker(group, render, quality, env))
        for w in started:
            w.wait_ready()
    except Exception:
        for w in started:
            w.close()
        raise
    tasks = {name: RemoteTask(w, name, render) for w in started for name in w.names}
    return {name: tasks[name] for name in names}
