"""The train_task graph for real: the online trainer drives the sim bridge through the robot topics.

A tiny budget (state observations, small networks, 100 agent steps) so it runs in the default suite: replay
episodes and a checkpoint must appear in the run folder, each replay episode must be the length of the task's
horizon with the actions the trainer sent and the bridge's rewards, and `training/progress` must report the
steps as they grow and then `done` without error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

TASK = "xarm/reach"
STEPS = 100  # two whole episodes of the 50-step xArm reach

TINY = {
    "network": {"obs": "state", "hidden": 64, "feature_dim": 32, "actor_layers": 2},
    "agent": {"batch_size": 32, "num_expl_steps": 20},
    "bc": {"pretrain_steps": 20, "batch_size": 32},
    "replay": {"capacity": 5000},
    "train": {"seed_frames": 40, "eval_every": 0, "eval_episodes": 1, "eval_video": False, "save_every": 50},
}


def test_train_task_graph_writes_replay_and_checkpoint_and_reports_progress(tmp_path):
    from polytask.launch.graphs import resolve
    from polytask.launcher import Launcher
    from polytask.learning.data.checkpoint import read_header
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.policies.demos import record_demos
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe, allocate_domain

    demos = tmp_path / "demos"
    record_demos(TASK, 2, demos, render=False, progress=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"
    nodes = resolve("train_task", [f"task:={TASK}", f"demos:={demos}", f"run_dir:={run_dir}", f"steps:={STEPS}",
                                   f"config:={cfg}", "rate:=100"])
    assert [n.name for n in nodes] == ["sim_bridge", "online_trainer", "monitor"]
    with allocate_domain(70, 99) as domain, open(tmp_path / "graph.log", "w") as log:
        launcher = Launcher(nodes, env=child_env(domain.id, extra={"OMP_NUM_THREADS": "1"}), output=log)
        launcher.start()
        probe = Probe(domain.id, name="train_probe")
        try:
            progress = probe.subscribe("training_progress")

            def latest() -> dict:
                return json.loads(progress[-1][1].data) if progress else {}

            done = probe.spin_until(lambda: latest().get("done", False) or "online_trainer" not in launcher.alive(),
                                    240) and latest().get("done", False)
            final = latest()
            steps_seen = sorted({json.loads(m.data).get("step", 0) for _, m in progress})
            alive = launcher.alive()
        finally:
            probe.close()
            launcher.shutdown()
    log_tail = (tmp_path / "graph.log").read_text()[-3000:]
    assert done, f"training did not finish; last progress {final}; log:\n{log_tail}"
    assert final["error"] == "", final["error"]
    assert final["step"] == STEPS and final["env"] == "sim"
    assert len(steps_seen) >= 3, f"progress not reported while training: {steps_seen}"
    assert {"sim_bridge", "monitor"} <= set(alive)

    episodes = EpisodeStore(run_dir / "replay", create=False).episodes()
    horizon = 50
    assert len(episodes) == STEPS // horizon
    for ep in episodes:
        assert ep.task == TASK and ep.source == "replay" and len(ep) == horizon
        assert np.all(ep.reward <= 0) and np.any(ep.reward < 0)  # xarm reach reward = -distance, from the bridge
        moved = np.linalg.norm(ep.state[-1, :3] - ep.state[0, :3])
        assert moved > 0.01, "the bridge's arm did not follow the trainer's actions"
    header = read_header(run_dir / "checkpoints" / "expert.safetensors")
    assert header["task"] == TASK and header["step"] >= 100
    assert final["checkpoint"].endswith("expert.safetensors")


def _run_graph(nodes, tmp_path, domain_id, name):
    from polytask.launcher import Launcher
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe

    with open(tmp_path / f"{name}.log", "w") as log:
        launcher = Launcher(nodes, env=child_env(domain_id, extra={"OMP_NUM_THREADS": "1"}), output=log)
        launcher.start()
        probe = Probe(domain_id, name=name)
        try:
            progress = probe.subscribe("training_progress")

            def latest() -> dict:
                return json.loads(progress[-1][1].data) if progress else {}

            probe.spin_until(lambda: latest().get("done", False) or "online_trainer" not in launcher.alive(), 240)
            return latest(), (tmp_path / f"{name}.log").read_text()
        finally:
            probe.close()
            launcher.shutdown()


def test_inprocess_training_and_resume_through_the_graph(tmp_path):
    """robot:=inprocess: no bridge, the trainer steps its own simulator; a second launch on the same run folder
    resumes from the checkpoint and continues the step count to the new budget."""
    from polytask.launch.graphs import resolve
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.policies.demos import record_demos
    from polytask.ros.testing import allocate_domain

    demos = tmp_path / "demos"
    record_demos(TASK, 2, demos, render=False, progress=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"

    def graph(steps: int):
        return resolve("train_task", ["robot:=inprocess", f"task:={TASK}", f"demos:={demos}", f"run_dir:={run_dir}",
                                      f"steps:={steps}", f"config:={cfg}"])

    assert [n.name for n in graph(50)] == ["online_trainer", "monitor"]
    with allocate_domain(70, 99) as domain:
        first, log1 = _run_graph(graph(50), tmp_path, domain.id, "first")
        second, log2 = _run_graph(graph(100), tmp_path, domain.id, "second")
    assert first.get("done") and first["error"] == "" and first["step"] == 50 and first["env"] == "inprocess", log1
    assert second.get("done") and second["error"] == "" and second["step"] == 100, log2
    assert "resuming" in log2
    episodes = EpisodeStore(run_dir / "replay", create=False).episodes()
    assert len(episodes) == 2 and all(len(ep) == 50 for ep in episodes)


@pytest.mark.slow
def test_ot_rewards_against_the_bridge(tmp_path):
    """reward:=ot through the topics, as on the real arm: the stored rewards are the OT ones, not the bridge's."""
    from polytask.launch.graphs import resolve
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.policies.demos import record_demos
    from polytask.ros.testing import allocate_domain

    demos = tmp_path / "demos"
    record_demos(TASK, 2, demos, render=False, progress=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"
    nodes = resolve("train_task", [f"task:={TASK}", f"demos:={demos}", f"run_dir:={run_dir}", "steps:=100",
                                   f"config:={cfg}", "rate:=100", "reward:=ot"])
    with allocate_domain(70, 99) as domain:
        final, log = _run_graph(nodes, tmp_path, domain.id, "ot")
    assert final.get("done") and final["error"] == "" and final["step"] == 100, log[-3000:]
    episodes = EpisodeStore(run_dir / "replay", create=False).episodes()
    assert len(episodes) == 2
    for ep in episodes:
        assert "ot_scale" in ep.extra and np.all(ep.reward <= 1e-6)
        assert not np.isclose(float(ep.reward.sum()), ep.extra["env_return"])
