"""The expert training loop: BC pretraining, then online finetuning with env or OT rewards; evaluation,
checkpoints, and an exact resume after a kill.

Why checkpoints land at episode ends: a simulator's internal state cannot be saved portably, but an episode
boundary needs none (each episode is reset with seed `seed*1000003 + episode`). At that point the checkpoint
holds everything else that decides the future: weights, target critics, Adam moments and steps, the OT target
encoder and scale, step/episode/update counters, torch/numpy/Python RNG states and the replay and demo samplers'
RNGs; the replay episodes themselves are in the run's episode store (`replay/`), of which a resumed run reloads
exactly the first `episodes_stored` (later files, written by the killed process after its last checkpoint, move to
`replay-orphans/`). On CPU with the same thread count a resumed run therefore repeats the uninterrupted one
bit for bit (tests/test_trainer.py kills a training process with SIGKILL and checks this).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polytask.learning.config import ConfigError, dump_yaml, load_config, to_dict
from polytask.learning.data.atomic import write_text
from polytask.learning.data.checkpoint import (
    config_hash,
    load_checkpoint,
    load_module,
    module_tensors,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.data.frames import FrameStacker, frames_chw, goal_image_chw
from polytask.learning.data.recorder import EpisodeRecorder
from polytask.learning.data.replay import ReplayBuffer, episode_obs
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.policies.expert import KIND, ExpertPolicy
from polytask.learning.reporting.run_logging import Progress, RunLogger, open_run_dir
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.bc import pretrain_bc
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.learning.rl.ot_rewards import OTRewarder
from polytask.learning.rl.torch_setup import prepare_torch
from polytask.sim import registry
from polytask.sim.task import Task

log = logging.getLogger(__name__)

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "expert.yaml"  # the documented defaults
EVAL_SEED = 1_000_000  # evaluation placements never coincide with training ones
LATEST = "latest.safetensors"
EXPERT = "expert.safetensors"


@dataclass
class RunState:
    step: int = 0  # agent steps taken in the environment
    episode: int = 0
    updates: int = 0
    bc_done: bool = False
    last_eval: int = -1
    last_save: int = 0
    episodes_stored: int = 0
    ot_scale: float | None = None


def sinusoid_goal(task_id: int, dim: int) -> np.ndarray:
    """Transformer-style positional embedding of the task id (the paper's DMC goal)."""
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / max(half, 1))
    ang = task_id * freqs
    return np.concatenate([np.sin(ang), np.cos(ang)]).astype(np.float32)


def onehot_goal(task_id: int, dim: int) -> np.ndarray:
    if not 0 <= task_id < dim:
        raise ValueError(f"one-hot goal: task id {task_id} does not fit goal_dim {dim}")
    v = np.zeros(dim, dtype=np.float32)
    v[task_id] = 1.0
    return v


def demo_goal_image(demos: list[Episode]) -> np.ndarray:
    """The last frame of a successful demo (its stored goal_pixels when present)."""
    ordered = sorted(demos, key=lambda e: not e.episode_success)
    for ep in ordered:
        if ep.goal_pixels is not None:
            return ep.goal_pixels
        if ep.pixels is not None:
            return ep.pixels[-1]
    raise ValueError("image goal: no demo carries pixels or goal_pixels")


def _check_from_scratch(cfg: ExpertConfig) -> None:
    """Without demos a run learns from the environment's reward alone (how the DMC demonstrators are trained)."""
    wrong = []
    if cfg.reward.kind != "env":
        wrong.append(f"reward.kind is {cfg.reward.kind!r} (OT rewards match demos; need 'env')")
    if cfg.bc.pretrain_steps > 0:
        wrong.append(f"bc.pretrain_steps is {cfg.bc.pretrain_steps} (need 0)")
    if cfg.agent.bc_regularize:
        wrong.append("agent.bc_regularize is true (need false)")
    if cfg.network.goal_modality == "image":
        wrong.append("network.goal_modality is 'image' (the goal image comes from a demo)")
    if wrong:
        raise ConfigError("train.demos is empty, so the run learns from scratch, but " + "; ".join(wrong)
                          + ". Give --demos <episode store>, or --bc-steps 0 --set agent.bc_regularize=false")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its latest full checkpoint (critic included), else its policy-only expert file."""
    path = Path(path)
    if path.is_dir():
        for name in (LATEST, EXPERT):
            if (path / "checkpoints" / name).exists():
                return path / "checkpoints" / name
        raise FileNotFoundError(f"{path}: no checkpoints/{LATEST} or checkpoints/{EXPERT}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def warm_start(agent: ExpertAgent, path: str | Path) -> Path:
    """Seed `agent`'s networks from another run of the same architecture (e.g. the neighbouring DMC torso variant).

    Optimiser state, step counters and replay are not taken: the new run starts at step 0. A policy-only file
    seeds encoder and actor; a full checkpoint also seeds the critics and their targets.
    """
    ckpt = resolve_checkpoint(path)
    tensors, _ = load_checkpoint(ckpt, expect={"kind": KIND, "network": agent.spec}, device="cpu")
    load_module(agent.nets.encoder, tensors, "encoder", str(ckpt))
    load_module(agent.nets.actor, tensors, "actor", str(ckpt))
    if any(k.startswith("critic/") for k in tensors):
        load_module(agent.nets.critic, tensors, "critic", str(ckpt))
        load_module(agent.critic_target, tensors, "critic_target", str(ckpt))
    else:
        agent.critic_target.load_state_dict(agent.nets.critic.state_dict())
    log.info("warm start from %s", ckpt)
    return ckpt


class ExpertTrainer:
    """One task's expert run. `ExpertTrainer(cfg).run()`, or `ExpertTrainer.resume(run_dir).run()`."""

    def __init__(self, cfg: ExpertConfig, run_dir: str | Path | None = None, _resume: bool = False) -> None:
        self.cfg = cfg
        tc = cfg.train
        if not tc.task:
            raise ConfigError("train.task is empty; give --task (e.g. metaworld/button-press-topdown)")
        if not tc.demos:
            _check_from_scratch(cfg)
        self.device = prepare_torch(tc.device, tc.threads, tc.seed)

        entry = registry.entry(tc.task)
        obs_kind = cfg.network.obs if cfg.network.obs != "auto" else ("state" if entry.suite == "dmc" else "pixels")
        self.pixels = obs_kind == "pixels"
        self.task: Task = registry.make(tc.task, render=self.pixels, quality=tc.render_quality)
        ts = self.task.spec
        self.action_repeat = ts.action_repeat

        demos: list[Episode] = []
        if tc.demos:
            store = EpisodeStore(tc.demos, create=False)
            demos = store.episodes(tc.task)
            if tc.max_demos > 0:
                demos = demos[: tc.max_demos]
            if not demos:
                raise ValueError(f"demo store {tc.demos} holds no episodes of task {tc.task!r} "
                                 f"(it has: {', '.join(store.tasks()) or 'nothing'})")
        self.demos = demos

        self.spec, goal = self._network_spec(obs_kind)
        self.agent = ExpertAgent(self.spec, cfg.agent, self.device, goal)
        if tc.init_from and not _resume:
            warm_start(self.agent, tc.init_from)
        self.goal_hwc = demo_goal_image(demos) if self.spec.goal_modality == "image" else None
        n_step = cfg.agent.n_step or ts.n_step

        self.run_dir = open_run_dir(run_dir, tc.runs_dir, tc.name or f"{tc.task.replace('/', '-')}-{cfg.reward.kind}")
        if not _resume:
            write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
        self.replay = ReplayBuffer(cfg.replay.capacity, self.pixels, self.spec.frame_stack, n_step,
                                   cfg.agent.gamma, seed=tc.seed, store=EpisodeStore(self.run_dir / "replay"))
        self.demo_buffer = ReplayBuffer(10**9, self.pixels, self.spec.frame_stack, 1, cfg.agent.gamma,
                                        seed=tc.seed + 1)
        for ep in demos:
            self.demo_buffer.add(ep, persist=False)
        self.rewarder: OTRewarder | None = None
        if cfg.reward.kind == "ot":
            self.rewarder = OTRewarder(self.agent.nets.encoder, [episode_obs(d, self.pixels) for d in demos],
                                       self.spec.frame_stack, self.pixels, cfg.reward.sinkhorn_reg,
                                       cfg.reward.sinkhorn_iters,
                                       scale=None if cfg.reward.auto_scale else cfg.reward.scale,
                                       scale_factor=cfg.reward.scale_factor, device=self.device)
        self.state = RunState()
        self.hash = config_hash(to_dict(cfg))
        self.logger: RunLogger | None = None
        self._eval_task: Task | None = None
        self.last_metrics: dict[str, float] = {}
        self.first_update_metrics: dict[str, float] | None = None  # first update after (re)start, for tests
        self.last_eval: dict[str, float] | None = None
        self.on_update: Callable[[int, dict[str, float]], None] | None = None  # e.g. tests recording every update

    # --- construction helpers --------------------------------------------------------------------------
    def _network_spec(self, obs_kind: str) -> tuple[NetworkSpec, np.ndarray | None]:
        nc, ts = self.cfg.network, self.task.spec
        goal_mod = nc.goal_modality if nc.goal_modality != "auto" else ("image" if obs_kind == "pixels" else "none")
        goal_dim, goal = 0, None
        if goal_mod == "onehot":
            goal_dim = nc.goal_dim or 16
            goal = onehot_goal(ts.task_id, goal_dim)
        elif goal_mod == "sinusoid":
            goal_dim = nc.goal_dim or max(2, ts.state_dim - ts.state_dim % 2)
            goal = sinusoid_goal(ts.task_id, goal_dim)
        elif goal_mod == "image":
            goal = goal_image_chw(demo_goal_image(self.demos))
        elif goal_mod != "none":
            raise ConfigError(f"network.goal_modality {goal_mod!r} not available for experts; "
                              "expected auto, image, onehot, sinusoid or none")
        if obs_kind == "pixels":
            obs_shape: tuple[int, ...] = (3, ts.image_size, ts.image_size)
            frame_stack = nc.frame_stack
        else:
            obs_shape, frame_stack = (ts.state_dim,), 1
        spec = NetworkSpec(obs_modality=obs_kind, obs_shape=obs_shape, action_dim=ts.action_dim,
                           goal_modality=goal_mod, goal_dim=goal_dim, hidden=nc.hidden, feature_dim=nc.feature_dim,
                           frame_stack=frame_stack, actor_layers=nc.actor_layers, critic_layers=nc.critic_layers,
                           critic_action_tile=nc.critic_action_tile, state_encoder=nc.state_encoder)
        return spec, goal

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: dict[str, Any] | None = None) -> ExpertTrainer:
        """Continue a run from `run_dir/checkpoints/latest.safetensors` with its saved config (+ overrides)."""
        run_dir = Path(run_dir)
        ckpt = run_dir / "checkpoints" / LATEST
        if not ckpt.exists():
            raise FileNotFoundError(f"{run_dir}: no checkpoint {ckpt.relative_to(run_dir)} to resume from")
        cfg = load_config(ExpertConfig, run_dir / "config.yaml", overrides)
        trainer = cls(cfg, run_dir, _resume=True)
        trainer._load(ckpt)
        if overrides:
            write_text(run_dir / "config.yaml", dump_yaml(cfg))
        return trainer

    # --- checkpoints -----------------------------------------------------------------------------------
    def _header(self, with_state: bool, extra_meta: dict[str, Any]) -> dict[str, Any]:
        h = {"kind": KIND, "network": self.spec.to_dict(), "goal_modality": self.spec.goal_modality,
             "task": self.cfg.train.task, "tasks": [self.cfg.train.task], "step": self.state.step,
             "frames": self.state.step * self.action_repeat, "config_hash": self.hash}
        if with_state:
            h.update({"config": to_dict(self.cfg), "run_state": dataclasses.asdict(self.state), **extra_meta})
        return h

    def save(self) -> Path:
        self.state.episodes_stored = self.replay.episodes_added
        self.state.ot_scale = self.rewarder.scale if self.rewarder else None
        tensors, agent_meta = self.agent.state_tensors(with_optim=True)
        rng_t, rng_meta = rng_tensors()
        tensors.update(rng_t)
        if self.rewarder is not None:
            tensors.update(module_tensors("ot_target", self.rewarder.target))
        meta = {"agent": agent_meta, "rng": rng_meta, "replay": self.replay.state(),
                "demo_replay": self.demo_buffer.state()}
        ckpt_dir = self.run_dir / "checkpoints"
        path = save_checkpoint(ckpt_dir / LATEST, tensors, self._header(True, meta))
        policy_t = {k: v for k, v in tensors.items() if k.startswith(("encoder/", "actor/")) or k == "goal"}
        save_checkpoint(ckpt_dir / EXPERT, policy_t, self._header(False, {}))
        self.state.last_save = self.state.step
        return path

    def _load(self, path: Path) -> None:
        tensors, header = load_checkpoint(path, expect={"kind": KIND, "network": self.spec,
                                                        "task": self.cfg.train.task}, device="cpu")
        fields = {f.name for f in dataclasses.fields(RunState)}
        self.state = RunState(**{k: v for k, v in header["run_state"].items() if k in fields})
        self.agent.load_state_tensors(tensors, header["agent"], str(path))
        if self.rewarder is not None:
            load_module(self.rewarder.target, tensors, "ot_target", str(path))
            self.rewarder.scale = self.state.ot_scale
        # Episodes the killed process stored after this checkpoint are not part of the resumed history.
        store = self.replay.store
        orphans = store.paths()[self.state.episodes_stored:]
        if orphans:
            dest = self.run_dir / "replay-orphans"
            dest.mkdir(exist_ok=True)
            for p in orphans:
                shutil.move(str(p), dest / p.name)
            log.info("moved %d episodes stored after the checkpoint to %s", len(orphans), dest)
        self.replay.store = EpisodeStore(self.run_dir / "replay")
        self.replay.reload(self.state.episodes_stored)
        self.replay.load_state(header["replay"])
        self.demo_buffer.load_state(header["demo_replay"])
        restore_rng(tensors, header["rng"])
        log.info("resumed %s at step %d (episode %d)", self.run_dir, self.state.step, self.state.episode)

    # --- evaluation ------------------------------------------------------------------------------------
    def policy(self) -> ExpertPolicy:
        goal = None if self.agent.goal is None else self.agent.goal[0]
        return ExpertPolicy(self.agent.nets.encoder, self.agent.nets.actor, self.spec, goal, self.device,
                            task=self.cfg.train.task)

    def evaluate(self) -> dict[str, float]:
        from polytask.learning.policies.evaluate import evaluate

        tc = self.cfg.train
        render = self.pixels or tc.eval_video
        if self._eval_task is None:
            self._eval_task = registry.make(tc.task, render=render, quality=tc.render_quality)
        video = (self.run_dir / "videos" / f"eval_{self.state.step:08d}.mp4") if tc.eval_video else None
        res = evaluate(self.policy(), tc.task, episodes=tc.eval_episodes, seed=EVAL_SEED, task=self._eval_task,
                       video_path=video)
        out = {"score": res.mean_score, "success_rate": res.success_rate, "return": res.mean_return,
               "episodes": res.episodes, "frames": self.state.step * self.action_repeat}
        self.state.last_eval = self.state.step
        self.last_eval = out
        if self.logger is not None:
            self.logger.log("eval", self.state.step, out)
            self.logger.plot_curves()
        return out

    # --- the loop --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, st = self.cfg, self.state
        resumed = st.step > 0 or st.bc_done
        self.logger = RunLogger(self.run_dir, resume_step=st.step if resumed else None)
        summary: dict[str, Any] = {"run_dir": str(self.run_dir)}
        try:
            if not st.bc_done:
                if cfg.bc.pretrain_steps > 0:
                    losses = pretrain_bc(self.agent, self.demo_buffer, cfg.bc.pretrain_steps, cfg.bc.batch_size,
                                         cfg.bc.lr)
                    for i in range(0, len(losses), max(1, len(losses) // 100)):
                        self.logger.log("bc", i, {"loss": losses[i]})
                    summary["bc_loss_first"], summary["bc_loss_last"] = losses[0], losses[-1]
                st.bc_done = True
                self.save()
            if st.last_eval < 0:
                summary["eval_start"] = self.evaluate()
            summary.update(self._finetune())
            if st.last_eval != st.step:
                summary["eval_final"] = self.evaluate()
            else:
                summary["eval_final"] = self.last_eval or {k: float(v) for k, v in self.logger.read("eval")[-1].items()}
            if st.last_save != st.step:
                self.save()
        finally:
            self.logger.plot_curves()
            self.logger.close()
        summary["step"] = st.step
        return summary

    def _finetune(self) -> dict[str, Any]:
        cfg, tc, st = self.cfg, self.cfg.train, self.state
        seed_steps = tc.seed_frames // self.action_repeat
        every = cfg.agent.update_every_steps
        demo_bs = cfg.replay.demo_batch_size or cfg.agent.batch_size
        stacker = FrameStacker(self.spec.frame_stack, self.pixels)
        progress = Progress(tc.steps, st.step, self.action_repeat, enabled=tc.progress,
                            desc=f"train {tc.task}")
        updates_since = 0
        ep_returns: list[float] = []
        try:
            while st.step < tc.steps:
                step = self.task.reset(seed=tc.seed * 1_000_003 + st.episode)
                obs_now = step.pixels if self.pixels else step.state
                x = stacker.reset(obs_now)
                rec = EpisodeRecorder(step)
                while not step.done:
                    if self.rewarder is not None and st.step % cfg.reward.target_update_steps == 0:
                        self.rewarder.refresh(self.agent.nets.encoder)
                    action = self.agent.act(x, st.step, eval_mode=False)
                    step = self.task.step(action)
                    x = stacker.push(step.pixels if self.pixels else step.state)
                    rec.add(action, step)
                    st.step += 1
                    n_up = 0
                    if st.step >= seed_steps and st.step % every == 0 and len(self.replay) > 0:
                        demo = self.demo_buffer.sample_bc(demo_bs) if cfg.agent.bc_regularize else None
                        metrics = self.agent.update(self.replay.sample(cfg.agent.batch_size), demo, st.step)
                        if self.first_update_metrics is None:
                            self.first_update_metrics = dict(metrics, step=st.step)
                        self.last_metrics = metrics
                        if self.on_update is not None:
                            self.on_update(st.step, metrics)
                        st.updates += 1
                        n_up = 1
                    updates_since += n_up
                    progress.advance(1, n_up)
                    if st.step >= tc.steps:
                        break
                episode = self._episode(rec)
                self.replay.add(episode)
                st.episode += 1
                ep_returns.append(float(episode.extra["env_return"]))
                self.logger.log("train", st.step, {
                    "frames": st.step * self.action_repeat, "episode": st.episode,
                    "episode_return": episode.extra["env_return"], "episode_score": episode.score,
                    "train_reward_return": float(episode.reward.sum()),
                    "episode_success": int(episode.episode_success), "env_fps": round(progress.env_fps, 1),
                    "updates_per_s": round(progress.ups, 2), **self.last_metrics})
                if tc.eval_every > 0 and st.step - st.last_eval >= tc.eval_every:
                    self.evaluate()
                if tc.save_every > 0 and st.step - st.last_save >= tc.save_every:
                    self.save()
        finally:
            progress.close()
        return {"train_episode_returns": ep_returns, "updates": st.updates}

    def _episode(self, rec: EpisodeRecorder) -> Episode:
        env_reward = rec.env_reward
        reward = env_reward
        extra: dict[str, Any] = {"terminal": bool(rec.last.terminal), "env_return": float(env_reward.sum()),
                                 "episode_index": self.state.episode}
        if self.rewarder is not None:
            obs = frames_chw(rec.pixels()) if self.pixels else np.stack(rec.states).astype(np.float32)
            reward = self.rewarder.episode_rewards(obs)
            extra["ot_demo"] = self.rewarder.last_best
            extra["ot_scale"] = self.rewarder.scale
        return rec.episode(self.task, source="replay", keep_pixels=self.pixels, reward=reward, extra=extra,
                           goal_pixels=self.goal_hwc)

    def close(self) -> None:
        self.task.close()
        if self._eval_task is not None:
            self._eval_task.close()


def train_expert(cfg: ExpertConfig) -> dict[str, Any]:
    trainer = ExpertTrainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()
