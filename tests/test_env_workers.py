"""Environment workers (sim/env_workers.py): the same episodes as in process, clear errors, clean shutdown; and
the expert trainer with `train.env_workers` playing exactly the episodes of the in-process loop."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from polytask.learning.config import load_config
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.sim import registry
from polytask.sim.env_workers import EnvWorker, EnvWorkerError, RemoteTask, start_workers

TASK = "xarm/reach"


def _play(task, seed: int, steps: int) -> list:
    rng = np.random.default_rng(seed)
    out = [task.reset(seed=seed)]
    for _ in range(steps):
        pending = task.step_async(rng.uniform(-1, 1, task.spec.action_dim))
        out.append(pending())
    return out


def test_remote_task_plays_the_in_process_episode():
    local = registry.make(TASK, render=True, quality="fast")
    remote = start_workers([TASK], 1, render=True, quality="fast")[TASK]
    try:
        assert remote.spec == local.spec
        for seed in (3, 4):
            a, b = _play(local, seed, 12), _play(remote, seed, 12)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x.state, y.state)
                np.testing.assert_array_equal(x.pixels, y.pixels)
                assert (x.reward, x.success, x.terminal, x.truncated) == (y.reward, y.success, y.terminal, y.truncated)
            assert remote.score() == local.score() and remote.t == local.t == 12
            assert remote.episode_return == pytest.approx(local.episode_return, abs=1e-9)
        assert a[-1].pixels is not None and a[-1].pixels.std() > 0  # real frames, not blanks
    finally:
        local.close()
        remote.close()
    assert not remote.worker.proc.is_alive() and remote.worker.proc.exitcode == 0  # it exited when asked


def test_worker_errors_are_clear_and_a_dead_worker_is_named():
    worker = EnvWorker([TASK], render=False, quality="fast", poll_s=0.1).wait_ready()
    task = RemoteTask(worker, TASK, render=False)
    try:
        task.reset(seed=0)
        worker.request("step", TASK, np.zeros(task.spec.action_dim + 2, np.float32))  # past the parent's check
        with pytest.raises(EnvWorkerError, match=r"failed:[\s\S]*expected 4"):
            worker.answer()
        task.step(np.zeros(task.spec.action_dim))  # the worker goes on after an error
        os.kill(worker.proc.pid, signal.SIGKILL)
        with pytest.raises(EnvWorkerError, match=r"died \(killed by signal 9\)"):
            task.step(np.zeros(task.spec.action_dim))
    finally:
        task.close()
    assert not worker.proc.is_alive()
    task.close()  # closing twice is fine


def test_a_worker_that_cannot_make_its_task_says_why():
    with pytest.raises(EnvWorkerError, match="no-such-task"):
        start_workers(["xarm/no-such-task"], 1, render=False, quality="fast")


def _tiny(tmp_path, workers: int) -> ExpertConfig:
    ov = {
        "train.task": TASK,
        "train.runs_dir": str(tmp_path / f"w{workers}"),
        "train.threads": 1,
        "train.progress": False,
        "train.eval_video": False,
        "network.obs": "pixels",
        "network.hidden": 32,
        "network.goal_modality": "none",
        "network.feature_dim": 16,
        "network.actor_layers": 2,
        "agent.batch_size": 16,
        "bc.pretrain_steps": 0,
        "agent.bc_regularize": False,
        "train.seed_frames": 50,
        "agent.num_expl_steps": 20,
        "train.steps": 120,
        "train.eval_episodes": 1,
        "train.eval_every": 0,
        "train.save_every": 0,
        "train.env_workers": workers,
    }
    return load_config(ExpertConfig, None, ov)


def test_trainer_with_env_workers_plays_the_in_process_episodes(tmp_path):
    out = {}
    for workers in (0, 1):
        trainer = ExpertTrainer(_tiny(tmp_path, workers))
        try:
            assert isinstance(trainer.task, RemoteTask) == (workers > 0)
            summary = trainer.run()
            episodes = trainer.replay.store.episodes(TASK)  # type: ignore[union-attr]
            out[workers] = (summary, episodes, {k: v.clone() for k, v in trainer.agent.nets.state_dict().items()})
        finally:
            trainer.close()
    (s0, e0, w0), (s1, e1, w1) = out[0], out[1]
    assert s0["updates"] == s1["updates"] > 0 and len(e0) == len(e1) >= 2
    for a, b in zip(e0, e1, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.action, b.action)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert s0["eval_final_row"]["return"] == s1["eval_final_row"]["return"]


def test_render_workers_share_the_cores_on_a_cpu():
    from polytask.sim.mujoco_render import worker_render_env

    env = worker_render_env(2, environ={"PATH": "/bin"}, cpus=4)
    assert env["MUJOCO_GL"] == "egl" and env["PYOPENGL_PLATFORM"] == "egl"
    if not os.path.exists("/dev/nvidia0"):  # llvmpipe: each of 2 workers gets 2 of the 4 cores
        assert env["LP_NUM_THREADS"] == "2"
        assert worker_render_env(8, environ={}, cpus=2)["LP_NUM_THREADS"] == "1"
    assert worker_render_env(2, environ={"LP_NUM_THREADS": "3"}, cpus=4)["LP_NUM_THREADS"] == "3"  # the user's
