"""Inputs the training tests share: folders of scripted demos, the tiny expert config (as overrides and as a file
for the training graphs of test_ros_graph_train and test_ros2_launch), and noisy stores to distill."""

from __future__ import annotations

from pathlib import Path

import yaml

# The smallest expert run that still exercises every stage (BC pre-training, seed frames, updates, saves).
TINY_EXPERT = {
    "network": {"obs": "state", "hidden": 64, "feature_dim": 32, "actor_layers": 2},
    "agent": {"batch_size": 32, "num_expl_steps": 20},
    "bc": {"pretrain_steps": 20, "batch_size": 32},
    "replay": {"capacity": 5000},
    "train": {"seed_frames": 40, "eval_every": 0, "eval_episodes": 1, "eval_video": False, "save_every": 50},
}


def scripted_demos(out: Path, tasks: tuple[str, ...] | list[str], n: int, render: bool = False) -> Path:
    """`n` successful scripted demos of each task in one folder (the scripted experts succeed on the first seeds)."""
    from polytask.learning.policies.demos import record_demos

    for task in tasks:
        assert record_demos(task, n, out, render=render, progress=False).kept == n, task
    return out


def tiny_expert_overrides(task: str, demos: Path, runs: Path, **extra) -> dict:
    """`--set` overrides of a state expert small enough for a test: tiny nets and batches, one thread, no eval."""
    ov = {
        "train.task": task,
        "train.demos": str(demos),
        "train.runs_dir": str(runs),
        "train.threads": 1,
        "train.progress": False,
        "train.eval_video": False,
        "network.obs": "state",
        "network.hidden": 32,
        "network.actor_layers": 2,
        "agent.batch_size": 32,
        "bc.pretrain_steps": 20,
        "bc.batch_size": 32,
        "train.seed_frames": 100,
        "agent.num_expl_steps": 0,
        "train.eval_episodes": 1,
        "train.eval_every": 0,
        "agent.stddev_schedule": "0.3",
    }
    ov.update(extra)
    return ov


def tiny_expert_inputs(root: Path, task: str, demos: int = 2) -> tuple[Path, Path, Path]:
    """(demo store with `demos` scripted demos of `task`, the TINY_EXPERT config file, the run folder to use)."""
    demo_dir = scripted_demos(root / "demos", [task], demos)
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_EXPERT))
    return demo_dir, cfg, root / "run"


def distill_inputs(
    root: Path, tasks: tuple[str, ...], transitions: int, checkpoint_every: int, hidden: int
) -> tuple[list[str], Path]:
    """(one noisy-expert store per task, a small distillation config file)."""
    from polytask.learning.distill.collect import collect_noisy_stores

    stores = [str(p) for p in collect_noisy_stores(tasks, root, transitions)]
    cfg = root / "distill.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "batch_size": 64,
                "lr": 1e-3,
                "log_every": 50,
                "checkpoint_every": checkpoint_every,
                "student": {"hidden": hidden, "layers": 2},
            }
        )
    )
    return stores, cfg
