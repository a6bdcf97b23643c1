"""Multi-task RL baselines (MTRL, MTRL-Demo, MTRL-PCGrad, Distral): their math, a tiny run that learns, the
registry and CLI, refusal of tasks that cannot share one network, and the unified policy's checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polytask.learning.baselines import BASELINES, get
from polytask.learning.config import ConfigError, load_config
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.policies.multitask import load_multitask_policy
from polytask.learning.rl.expert_config import AgentConfig
from polytask.learning.rl.multitask import POLICY_FILE, MultiTaskRLTrainer
from polytask.learning.rl.multitask_agents import Centroid, DistralAgent, PCGradAgent, gaussian_kl, task_rows
from polytask.learning.rl.multitask_config import METHODS, MultiTaskConfig
from polytask.learning.rl.parts import check_compatible
from polytask.sim import registry
from polytask.sim.task import TaskSpec

TASKS = ["metaworld/button-press-topdown", "metaworld/coffee-button"]  # = conftest.RL_PAIR (rl_pair_demos)
SPEC = NetworkSpec(obs_modality="state", obs_shape=(6,), action_dim=2, goal_modality="onehot", goal_dim=2, hidden=32,
                   actor_layers=2)
# A tiny state-based run: small networks, one thread, no waiting for seed frames.
TINY = {"train.threads": 1, "train.progress": False, "network.obs": "state", "network.hidden": 64,
        "network.actor_layers": 2, "agent.batch_size": 64, "bc.pretrain_steps": 50, "bc.batch_size": 64,
        "train.seed_frames": 0, "agent.num_expl_steps": 0, "train.eval_episodes": 1, "train.eval_every": 0,
        "train.save_every": 0, "agent.stddev_schedule": "0.3"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def demos(rl_pair_demos) -> Path:
    return rl_pair_demos


def _batch(rng: np.random.Generator, n: int = 64) -> dict[str, np.ndarray]:
    goal = np.zeros((n, 2), np.float32)
    goal[np.arange(n), rng.integers(0, 2, n)] = 1.0
    return {"obs": rng.normal(size=(n, 6)).astype(np.float32), "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "reward": rng.normal(size=(n, 1)).astype(np.float32), "discount": np.full((n, 1), 0.97, np.float32),
            "next_obs": rng.normal(size=(n, 6)).astype(np.float32), "goal": goal}


# --- (1) math -----------------------------------------------------------------------------------------
def test_distral_kl_is_the_gaussian_kl_and_pulls_task_policies_toward_pi0():
    mu_p, mu_q = torch.randn(10, 4), torch.randn(10, 4)
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mu_p, 0.1),
                                             torch.distributions.Normal(mu_q, 0.1)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu_p, mu_q, 0.1), want)

    rng = np.random.default_rng(0)
    batches = [_batch(rng) for _ in range(40)]
    cfg = AgentConfig(lr=1e-3, stddev_schedule="0.2", bc_regularize=False)
    goal = np.array([1.0, 0.0], np.float32)
    distance = {}
    for coef in (0.0, 5.0):
        torch.manual_seed(0)
        centroid = Centroid(SPEC, std=0.1, lr=1e-3)
        agent = DistralAgent(SPEC, cfg, goal=goal, centroid=centroid, kl_coef=coef)
        for b in batches:
            agent.update({k: v for k, v in b.items() if k != "goal"}, None, 100)  # this task's own goal
        obs = torch.as_tensor(batches[0]["obs"])
        g = agent._goal_batch(obs.shape[0])
        with torch.no_grad():
            distance[coef] = float((agent.nets.act_mean(obs, g) - centroid.mean(obs, g)).pow(2).sum(-1).mean())
    assert distance[5.0] < 0.3 * distance[0.0], distance  # the KL term pulls mu_i toward mu_0

    torch.manual_seed(1)
    centroid = Centroid(SPEC, std=0.1, lr=3e-3)
    obs, g = torch.randn(64, 6), torch.as_tensor(batches[0]["goal"])
    target = torch.tanh(torch.randn(64, 2))
    losses = [centroid.update(obs, g, target)["centroid_loss"] for _ in range(100)]
    assert losses[-1] < 0.2 * losses[0]  # pi0 learns to match the task policies' means


def test_pcgrad_agent_splits_tasks_by_goal_and_removes_conflicts():
    goal = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1], [0, 1]])
    assert [r.tolist() for r in task_rows(goal)] == [[1, 3, 4], [0, 2]]

    torch.manual_seed(0)
    agent = PCGradAgent(SPEC, AgentConfig(lr=1e-3, bc_regularize=False), goal=np.array([1.0, 0.0], np.float32))
    params = [p for group in agent.critic_opt.param_groups for p in group["params"]]
    flat = torch.cat([p.reshape(-1) for p in params])
    u_a = torch.randn(flat.numel())
    u_b = -0.8 * u_a + 0.6 * torch.randn(flat.numel())
    assert float(u_a @ u_b) < 0  # conflicting task gradients
    losses = [(torch.cat([p.reshape(-1) for p in params]) * u).sum() for u in (u_a, u_b)]
    agent._surgery(agent.critic_opt, losses)
    g = torch.cat([p.grad.reshape(-1) for p in params])
    assert float(g @ u_a) > -1e-4 and float(g @ u_b) > -1e-4  # the combined step hurts neither task
    assert float(((u_a + u_b) / 2) @ u_b) < float(g @ u_b)  # while the plain average works against task b

    before = agent.nets.critic.q1[0].weight.clone()
    metrics = agent.update(_batch(np.random.default_rng(1)), None, 10)
    assert metrics["tasks"] == 2 and np.isfinite(metrics["critic_loss"])
    assert not torch.equal(before, agent.nets.critic.q1[0].weight)


# --- (2) learning ---------------------------------------------------------------------------------------
def test_mtrl_demo_learns_both_metaworld_tasks_from_states(demos, tmp_path):
    """Measured 2/2 seeds: start 0/2 tasks, after BC pretraining + 300 RL steps 2.0/2 (5 episodes each)."""
    ov = {**TINY, "train.method": "mtrl-demo", "train.tasks": TASKS, "train.demos": str(demos),
          "network.hidden": 128, "agent.batch_size": 128, "bc.pretrain_steps": 500, "bc.batch_size": 128,
          "bc.lr": 1e-3, "agent.stddev_schedule": "0.1", "train.eval_episodes": 5, "train.steps": 300}
    trainer = MultiTaskRLTrainer(load_config(MultiTaskConfig, None, ov), tmp_path / "run")
    try:
        start = trainer.evaluate()  # the untrained network
        summary = trainer.run()
    finally:
        trainer.close()
    assert start["effective_tasks"] <= 0.4, start
    assert summary["effective_tasks"] >= 1.4, summary["eval_final"]
    assert summary["bc_loss_last"] < 0.3 * summary["bc_loss_first"] and summary["updates"] > 100


# --- (3) registry, CLI, refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_every_multitask_baseline_runs_from_the_registry(method, demos, tmp_path, capsys):
    assert BASELINES[method].kind == "multitask"
    run_dir = tmp_path / method
    if method == "mtrl":  # one of them through the CLI
        from polytask.cli import main

        args = ["train-multitask", "--method", method, "--tasks", *TASKS, "--steps", "130", "--out", str(run_dir)]
        assert main([*args, *[f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    else:
        summary = get(method).runner(TASKS, demos=str(demos) if method == "mtrl-demo" else "", steps=130,
                                     overrides=TINY, run_dir=run_dir)
        assert summary["updates"] > 30  # every 2 agent steps once the first episode is stored
    assert summary["run_dir"] == str(run_dir) and summary["step"] == 130
    with open(run_dir / "eval_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["task"] for r in rows] == [t.split("/")[1] for t in TASKS] + ["effective tasks"]
    assert float(rows[-1][method]) == pytest.approx(sum(float(r[method]) for r in rows[:-1]))
    assert float(rows[-1][method]) == pytest.approx(summary["effective_tasks"])
    with open(run_dir / "train.csv", newline="") as fh:
        train = list(csv.DictReader(fh))
    assert [r["task"] for r in train[:2]] == TASKS  # episodes cycle over the tasks
    loss_key = "centroid_loss" if method == "distral" else "critic_loss"
    assert np.isfinite(float(train[-1][loss_key]))
    policy = load_multitask_policy(run_dir / "checkpoints" / POLICY_FILE)
    assert policy.tasks == TASKS
    if method == "mtrl":  # `polytask eval` loads this kind too and scores it exactly as the run did
        from polytask.cli import main

        capsys.readouterr()
        assert main(["eval", "--policy", str(run_dir / "checkpoints" / POLICY_FILE), "--episodes", "1",
                     "--seed", "1000000", "--no-progress"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("effective tasks:"))
        assert float(line.split()[2]) == pytest.approx(summary["effective_tasks"])


def test_tasks_that_cannot_share_a_network_are_refused(demos, tmp_path):
    mw = TaskSpec("metaworld/door-open", "metaworld", 1, state_dim=39, action_dim=4, horizon=63, action_repeat=2)
    dmc = TaskSpec("dmc/cheetah-run-torso-1", "dmc", 0, state_dim=17, action_dim=6, horizon=500, action_repeat=2)
    big = TaskSpec("x/y", "x", 0, state_dim=50, action_dim=4, horizon=10, action_repeat=2)
    with pytest.raises(ValueError, match=r"'dmc/cheetah-run-torso-1' has action dim 6, but 'metaworld/door-open'"):
        check_compatible([mw, dmc], pixels=False)
    with pytest.raises(ValueError, match=r"'x/y' has state dim 50, but 'metaworld/door-open' has 39"):
        check_compatible([mw, big], pixels=False)
    check_compatible([mw, big], pixels=True)  # same 84x84 frames and action size: fine for pixels

    with pytest.raises(ValueError, match=r"'xarm/reach' has state dim 10, but 'metaworld/button-press-topdown' has 39"):
        MultiTaskRLTrainer(load_config(MultiTaskConfig, None, {**TINY, "train.tasks": [TASKS[0], "xarm/reach"]}),
                           tmp_path)
    with pytest.raises(ConfigError, match="learns without demos"):
        MultiTaskRLTrainer(load_config(MultiTaskConfig, None, {**TINY, "train.tasks": TASKS,
                                                               "train.demos": str(demos)}), tmp_path)
    with pytest.raises(ConfigError, match="give --demos"):
        MultiTaskRLTrainer(load_config(MultiTaskConfig, None, {**TINY, "train.method": "mtrl-demo",
                                                               "train.tasks": TASKS}), tmp_path)
    with pytest.raises(ConfigError, match=r"'train\.method' is 'mtrl-pcgrd', expected one of"):
        load_config(MultiTaskConfig, None, {"train.method": "mtrl-pcgrd"})
    assert not list(tmp_path.iterdir())  # nothing written before the checks


# --- (4) checkpoint --------------------------------------------------------------------------------------
def test_policy_checkpoint_round_trip_acts_the_same(tmp_path):
    ov = {**TINY, "train.method": "mtrl", "train.tasks": TASKS, "train.steps": 70}
    trainer = MultiTaskRLTrainer(load_config(MultiTaskConfig, None, ov), tmp_path / "run")
    try:
        trainer.train()
        path = trainer.save()
        live, loaded = trainer.policy(), load_multitask_policy(path)
        actions = {}
        for name in TASKS:
            task = trainer.tasks[name]
            step = task.reset(seed=5)
            live.reset(step)
            loaded.reset(step)
            for _ in range(5):
                a = live.act(step)
                np.testing.assert_array_equal(a, loaded.act(step))
                step = task.step(a)
            actions[name] = a
        assert not np.allclose(actions[TASKS[0]], actions[TASKS[1]])  # the goal changes what it does
        with pytest.raises(KeyError, match="not trained on task 'metaworld/hammer'"):
            loaded.reset(registry.make("metaworld/hammer", render=False).reset(seed=0))
    finally:
        trainer.close()
