"""The pixel experts of runs 1 and 2 (bench/pixel_runs.py): one process per expert, side by side, to a deadline.

- `rl(job, ["experts", "ot"], share)`: run 1's experts (1 scripted demo each, BC pretraining, then DrQ-v2 + the BC
  term on the environment reward, image goal, placements drawn at every reset) and run 2's OT-only expert (two
  seeds), all in one pool; a run whose CUDA-graph update fails is run again eagerly while time is left. Each keeps
  its run folder (replay store, checkpoint) in WORK/experts/<task>/ or WORK/ot/<task>-seed<s>/.
- `expert_job(job)`: one expert in its own process, stopped at its deadline.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pixel_common as pc
from pixel_common import Job, Profile, slug


def expert_overrides(p: Profile, task: str, demos: Path, reward: str, seed: int, threads: int) -> dict[str, Any]:
    """The expert config of runs 1 and 2 (Table IV apart from these keys): pixels, image goal, 1 demo."""
    return {
        "train.task": task,
        "train.demos": str(demos),
        "train.max_demos": 1,
        "train.seed": seed,
        "train.device": p.device,
        "train.threads": threads,
        "train.steps": p.max_rl_steps,
        "train.seed_frames": p.seed_frames,
        "train.eval_every": p.eval_every,
        "train.eval_episodes": p.eval_episodes,
        "train.eval_video": False,
        "train.save_every": 0,
        "train.progress": False,
        "network.obs": "pixels",
        "network.goal_modality": "image",
        "network.hidden": p.hidden,
        "network.feature_dim": p.feature_dim,
        "agent.batch_size": p.batch,
        "agent.compile": p.compile,
        "agent.stddev_schedule": 0.1,
        "agent.num_expl_steps": 0,
        "bc.pretrain_steps": p.bc_steps,
        "bc.batch_size": p.batch,
        "reward.kind": reward,
    }


def expert_job(job: dict[str, Any]) -> dict[str, Any]:
    """One expert run in this process until `job["deadline"]` (epoch s): BC, RL, the final evaluation.

    The deadline ends RL at the next update after it (the loop reads `train.steps` at every step, so lowering it
    to the current step ends the run there, with its final evaluation and checkpoint as at any other end)."""
    from polytask.learning.config import load_config
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.rl.expert import ExpertTrainer
    from polytask.learning.rl.expert_config import ExpertConfig

    t0 = time.time()
    out: dict[str, Any] = {
        "task": job["task"],
        "seed": job["overrides"]["train.seed"],
        "reward": job["overrides"]["reward.kind"],
        "compile": job["overrides"]["agent.compile"],
    }
    try:
        trainer = ExpertTrainer(load_config(ExpertConfig, None, dict(job["overrides"])), job["run_dir"])
    except Exception as err:
        return {**out, "status": "error", "error": f"{type(err).__name__}: {err}"}
    stopped = {"by_deadline": False}

    def stop_at_deadline(step: int, _metrics: dict[str, float]) -> None:
        if time.time() >= job["deadline"] and trainer.cfg.train.steps > step:
            trainer.cfg.train.steps = step
            stopped["by_deadline"] = True

    trainer.on_update = stop_at_deadline
    try:
        summary = trainer.run()
        replay = EpisodeStore(trainer.replay_dir(trainer.names[0]), create=False)
        paths = replay.paths()
        out.update(
            status="ok",
            run_dir=str(trainer.run_dir),
            checkpoint=str(trainer.policy_path),
            replay=str(replay.root),
            replay_episodes=len(paths),
            replay_transitions=sum(int(p.stem.rsplit("_", 1)[-1]) for p in paths),
            replay_bytes=sum(p.stat().st_size for p in paths),
            stopped_by_deadline=stopped["by_deadline"],
            steps=int(summary["step"]),
            updates=int(summary["updates"]),
            bc_loss_first=summary.get("bc_loss_first"),
            bc_loss_last=summary.get("bc_loss_last"),
            bc_start=summary.get("eval_start", {}).get(job["task"]),
            success=float(summary["eval_final_row"]["success_rate"]),
            curve=eval_curve(trainer.run_dir),
        )
    except Exception as err:
        out.update(status="error", error=f"{type(err).__name__}: {err}", trace=traceback.format_exc()[-2000:])
    finally:
        trainer.close()
    out["wall_s"] = round(time.time() - t0, 1)
    return out


def eval_curve(run_dir: Path) -> list[list[float]]:
    """(step, success rate) of every evaluation of a run, from its eval CSV."""
    import csv

    path = Path(run_dir) / "eval.csv"
    if not path.exists():
        return []
    with path.open() as fh:
        return [[int(float(r["step"])), float(r["success_rate"])] for r in csv.DictReader(fh)]


def rl(job: Job, which: Sequence[str], share: float) -> dict[str, dict[str, Any]]:
    p = job.p
    specs = (
        [("experts", t, 1, "env", job.work / "experts" / slug(t)) for t in p.expert_tasks] if "experts" in which else []
    )
    if "ot" in which:
        specs += [("ot", p.ot_task, s, "ot", job.work / "ot" / f"{slug(p.ot_task)}-seed{s}") for s in p.ot_seeds]
    demos = job.demos(sorted({t for _, t, *_ in specs}))
    end = job.budget.deadline(share)
    threads = max(1, (os.cpu_count() or 1) // len(specs)) if p.device.startswith("cuda") else 1
    jobs = []
    for _, task, seed, reward, run_dir in specs:
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: its replay store holds this run's episodes only
        jobs.append(
            {
                "task": task,
                "run_dir": str(run_dir),
                "deadline": end - p.eval_reserve_s,
                "overrides": expert_overrides(p, task, demos, reward, seed, threads),
            }
        )
    workers = len(jobs) if p.device.startswith("cuda") else p.workers
    job.log(f"rl: {len(jobs)} expert runs side by side until {end - job.budget.start:.0f} s")
    results = pc.pool_map(expert_job, jobs, workers)
    # a CUDA-graph failure on a card it never ran on must not cost the run: the failed ones again, eagerly
    again = [i for i, r in enumerate(results) if r["status"] != "ok" and r["compile"] == "graph"]
    if again and end - time.time() > 3 * p.eval_reserve_s:
        job.log(f"rl: {len(again)} runs failed with agent.compile=graph; again with compile none")
        for i in again:
            shutil.rmtree(jobs[i]["run_dir"], ignore_errors=True)
            jobs[i]["overrides"] = {**jobs[i]["overrides"], "agent.compile": "none"}
        retried = pc.pool_map(expert_job, [jobs[i] for i in again], workers)
        for i, r in zip(again, retried, strict=True):
            results[i] = {**r, "graph_error": results[i].get("error")}
    out: dict[str, dict[str, Any]] = {}
    for (run, *_), r in zip(specs, results, strict=True):
        out.setdefault(run, {"runs": []})["runs"].append(r)
    for run, res in out.items():
        ok = [r["success"] for r in res["runs"] if r["status"] == "ok"]
        res["mean_success"] = float(np.mean(ok)) if ok else None
        res["eval_episodes"] = p.eval_episodes
        res["bar"] = ">= 0.8 on every task" if run == "experts" else ">= 0.7"
        res["bar_met"] = bool(ok) and len(ok) == len(res["runs"]) and min(ok) >= (0.8 if run == "experts" else 0.7)
    return out


def expert_rows(res: dict[str, Any]) -> list[str]:
    rows = [
        (
            r["task"].split("/")[-1],
            r["seed"],
            r.get("bc_start", "-"),
            r.get("success", r.get("error", "-")),
            r.get("steps", "-"),
            r.get("updates", "-"),
            r.get("replay_episodes", "-"),
            r.get("wall_s", "-"),
            " ".join(f"{c[1]:.1f}@{c[0]}" for c in r.get("curve", [])) or "-",
        )
        for r in res["runs"]
    ]
    return [
        *pc.table(
            [
                "task",
                "seed",
                f"BC start ({res['eval_episodes']} eps)",
                f"final success ({res['eval_episodes']} eps)",
                "agent steps",
                "updates",
                "replay episodes",
                "wall s",
                "success@step during training",
            ],
            rows,
        ),
        "",
        f"mean success {res['mean_success']}; bar {res['bar']}: {'met' if res['bar_met'] else 'not met'}",
    ]


RENDER = {"experts": expert_rows, "ot": expert_rows}
