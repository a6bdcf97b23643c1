"""The train_task graph for real: the online trainer drives the sim bridge through the robot topics.

A tiny budget (state observations, small networks, 100 agent steps) so it runs in the default suite: replay
episodes and a checkpoint must appear in the run folder, each replay episode must be the length of the task's
horizon with the actions the trainer sent and the bridge's rewards, and `training/progress` must report the
steps as they grow and then `done` without error.
"""

from __future__ import annotations

import numpy as np
import pytest
from training_inputs import tiny_expert_inputs

pytestmark = pytest.mark.ros

TASK = "xarm/reach"
STEPS = 100  # two whole episodes of the 50-step xArm reach

@pytest.fixture
def tiny_run(tmp_path):
    """Two recorded demos of TASK, the tiny training config, and the run folder to train into."""
    return tiny_expert_inputs(tmp_path, TASK)


def test_train_task_graph_writes_replay_and_checkpoint_and_reports_progress(tmp_path, tiny_run):
    from polytask.launch.graphs import resolve
    from polytask.learning.data.checkpoint import read_header
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.ros.testing import allocate_domain, run_job_graph

    demos, cfg, run_dir = tiny_run
    nodes = resolve("train_task", [f"task:={TASK}", f"demos:={demos}", f"run_dir:={run_dir}", f"steps:={STEPS}",
                                   f"config:={cfg}", "rate:=100"])
    assert [n.name for n in nodes] == ["sim_bridge", "online_trainer", "monitor"]
    with allocate_domain(70, 99) as domain:
        run = run_job_graph(nodes, domain.id, "online_trainer", tmp_path / "graph.log", probe_name="train_probe")
    final = run.final
    steps_seen = sorted({p.get("step", 0) for p in run.progress})
    assert run.done, f"training did not finish; last progress {final}; log:\n{run.log[-3000:]}"
    assert final["error"] == "", final["error"]
    assert final["step"] == STEPS and final["env"] == "sim"
    assert len(steps_seen) >= 3, f"progress not reported while training: {steps_seen}"
    assert {"sim_bridge", "monitor"} <= set(run.alive)

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


def test_inprocess_training_and_resume_through_the_graph(tmp_path, tiny_run):
    """robot:=inprocess: no bridge, the trainer steps its own simulator; a second launch on the same run folder
    resumes from the checkpoint and continues the step count to the new budget."""
    from polytask.launch.graphs import resolve
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.ros.testing import allocate_domain, run_job_graph

    demos, cfg, run_dir = tiny_run

    def graph(steps: int):
        return resolve("train_task", ["robot:=inprocess", f"task:={TASK}", f"demos:={demos}", f"run_dir:={run_dir}",
                                      f"steps:={steps}", f"config:={cfg}"])

    assert [n.name for n in graph(50)] == ["online_trainer", "monitor"]
    with allocate_domain(70, 99) as domain:
        first = run_job_graph(graph(50), domain.id, "online_trainer", tmp_path / "first.log")
        second = run_job_graph(graph(100), domain.id, "online_trainer", tmp_path / "second.log")
    assert first.done and first.final["error"] == "" and first.final["step"] == 50, first.log
    assert first.final["env"] == "inprocess", first.final
    assert second.done and second.final["error"] == "" and second.final["step"] == 100, second.log
    assert "resuming" in second.log
    episodes = EpisodeStore(run_dir / "replay", create=False).episodes()
    assert len(episodes) == 2 and all(len(ep) == 50 for ep in episodes)


@pytest.mark.slow
def test_ot_rewards_against_the_bridge(tmp_path, tiny_run):
    """reward:=ot through the topics, as on the real arm: the stored rewards are the OT ones, not the bridge's."""
    from polytask.launch.graphs import resolve
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.ros.testing import allocate_domain, run_job_graph

    demos, cfg, run_dir = tiny_run
    nodes = resolve("train_task", [f"task:={TASK}", f"demos:={demos}", f"run_dir:={run_dir}", "steps:=100",
                                   f"config:={cfg}", "rate:=100", "reward:=ot"])
    with allocate_domain(70, 99) as domain:
        run = run_job_graph(nodes, domain.id, "online_trainer", tmp_path / "ot.log")
    assert run.done and run.final["error"] == "" and run.final["step"] == 100, run.log[-3000:]
    episodes = EpisodeStore(run_dir / "replay", create=False).episodes()
    assert len(episodes) == 2
    for ep in episodes:
        assert "ot_scale" in ep.extra and np.all(ep.reward <= 1e-6)
        assert not np.isclose(float(ep.reward.sum()), ep.extra["env_return"])
