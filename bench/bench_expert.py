"""Expert training throughput: updates/s of `ExpertAgent.update` against a plain eager DrQ-v2 update run in the same
process, and env frames/s of the acting loop against the bare simulator.

The eager reference is what DrQ-v2's code does: bilinear `grid_sample` random shift in float, one encoder call
per tensor (obs, next obs, goal, demo obs, demo goal), a Python loop for the soft target update. Ours: an exact
integer-shift gather on uint8, one batched no-grad encoder call for next obs + goals + demo obs, `_foreach_lerp_`
for the target update. Both run the same networks at the paper's sizes (hidden 1024, 512-d features, batch 256).

  .venv/bin/python bench/bench_expert.py                 # CPU, paper sizes
  .venv/bin/python bench/bench_expert.py --device cuda   # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from polytask.learning.data.frames import FrameStacker
from polytask.learning.nets.drqv2 import NetworkSpec, goal_features, log_prob_fixed_std
from polytask.learning.rl.agent import ExpertAgent, TruncatedNormal
from polytask.learning.rl.expert_config import AgentConfig


def grid_shift(x: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ-v2's RandomShiftsAug (replicate pad + bilinear grid_sample at integer offsets)."""
    n, _c, h, _w = x.shape
    x = F.pad(x.float(), (pad,) * 4, mode="replicate")
    eps = 1.0 / (h + 2 * pad)
    arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad, device=x.device)[:h]
    arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
    base = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
    shift = torch.randint(0, 2 * pad + 1, size=(n, 1, 1, 2), device=x.device).float() * (2.0 / (h + 2 * pad))
    return F.grid_sample(x, base + shift, padding_mode="zeros", align_corners=False)


def eager_update(agent: ExpertAgent, batch: dict, demo: dict, step: int) -> float:
    """A plain DrQ-v2 + BC update with the agent's networks and optimisers (the reference)."""
    dev, spec, cfg, nets = agent.device, agent.spec, agent.cfg, agent.nets
    obs, action = torch.as_tensor(batch["obs"], device=dev), torch.as_tensor(batch["action"], device=dev)
    reward, discount = torch.as_tensor(batch["reward"], device=dev), torch.as_tensor(batch["discount"], device=dev)
    next_obs = torch.as_tensor(batch["next_obs"], device=dev)
    obs_bc, act_bc = torch.as_tensor(demo["obs"], device=dev), torch.as_tensor(demo["action"], device=dev)
    n = obs.shape[0]
    goal = agent._goal_batch(n)
    goal_bc = agent._goal_batch(obs_bc.shape[0])
    if agent.pixels:
        obs, next_obs, obs_bc = grid_shift(obs, 4), grid_shift(next_obs, 4), grid_shift(obs_bc, 4)
        if goal is not None and goal.dim() == 4:
            goal, goal_bc = grid_shift(goal, 4), grid_shift(goal_bc, 4)
    obs_f = nets.encoder(obs)
    with torch.no_grad():
        next_f = nets.encoder(next_obs)
        goal_f = goal_features(nets.encoder, spec, goal, obs)
        obs_bc_f = nets.encoder(obs_bc)
        goal_bc_f = goal_features(nets.encoder, spec, goal_bc, obs_bc)
    std = agent.stddev(step)
    with torch.no_grad():
        na = TruncatedNormal(nets.actor(next_f, goal_f), std).sample(clip=cfg.stddev_clip)
        tq1, tq2 = agent.critic_target(next_f, goal_f, na)
        y = reward + discount * torch.min(tq1, tq2)
    q1, q2 = nets.critic(obs_f, goal_f, action)
    critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
    agent.critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    agent.critic_opt.step()
    of = obs_f.detach()
    a = TruncatedNormal(nets.actor(of, goal_f), std).sample(clip=cfg.stddev_clip)
    q = torch.min(*nets.critic(of, goal_f, a))
    bc = -log_prob_fixed_std(nets.actor(obs_bc_f, goal_bc_f), act_bc, cfg.bc_std).mean()
    actor_loss = -(1 - cfg.bc_lambda) * q.mean() + cfg.bc_alpha * cfg.bc_lambda * bc
    agent.actor_opt.zero_grad(set_to_none=True)
    actor_loss.backward()
    agent.actor_opt.step()
    with torch.no_grad():
        for p, tp in zip(nets.critic.parameters(), agent.critic_target.parameters(), strict=True):
            tp.data.copy_(cfg.critic_tau * p.data + (1 - cfg.critic_tau) * tp.data)
    return float(critic_loss.detach())


def _batches(spec: NetworkSpec, batch: int, rng: np.random.Generator) -> tuple[dict, dict]:
    if spec.obs_modality == "pixels":
        shape = (batch, spec.in_channels, *spec.obs_shape[1:])
        obs = lambda: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731
    else:
        obs = lambda: rng.normal(size=(batch, spec.obs_repr_dim)).astype(np.float32)  # noqa: E731
    b = {"obs": obs(), "next_obs": obs(), "action": rng.uniform(-1, 1, (batch, spec.action_dim)).astype(np.float32),
         "reward": rng.normal(size=(batch, 1)).astype(np.float32), "discount": np.full((batch, 1), 0.97, np.float32)}
    d = {"obs": obs(), "action": rng.uniform(-1, 1, (batch, spec.action_dim)).astype(np.float32)}
    return b, d


def _race(fns: dict, iters: int) -> dict:
    """Median ms of `eager` and `ours` (after one warm-up call each), interleaved so that both see the same machine
    load, and the speedup of ours over eager."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {f"{k}_ms": 1000 * float(np.median(v)) for k, v in times.items()}
    out["speedup"] = out["eager_ms"] / out["ours_ms"]
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_updates(spec: NetworkSpec, goal, batch: int, iters: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    agent = ExpertAgent(spec, AgentConfig(batch_size=batch), device, goal=goal)
    b, d = _batches(spec, batch, rng)
    fns = {"eager": lambda s: eager_update(agent, b, d, s), "ours": lambda s: agent.update(b, d, s)}
    for fn in fns.values():
        fn(0)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    # Interleaved, so both see the same machine load (the 2-core CPU is shared).
    for i in range(iters):
        for name, fn in fns.items():
            _sync(agent.device)
            t0 = time.perf_counter()
            fn(i + 1)
            _sync(agent.device)
            times[name].append(time.perf_counter() - t0)
    out = {name: 1.0 / float(np.median(t)) for name, t in times.items()}
    out["ratio"] = out["ours"] / out["eager"]
    return out


def bench_env(task_name: str, pixels: bool, steps: int, device: str) -> dict:
    from polytask.sim import registry

    task = registry.make(task_name, render=pixels)
    ts = task.spec
    spec = NetworkSpec("pixels" if pixels else "state", (3, ts.image_size, ts.image_size) if pixels else
                       (ts.state_dim,), ts.action_dim, "image" if pixels else "none", frame_stack=3 if pixels else 1)
    goal = np.zeros((3, ts.image_size, ts.image_size), np.uint8) if pixels else None
    agent = ExpertAgent(spec, AgentConfig(num_expl_steps=0), device, goal=goal)
    stacker = FrameStacker(spec.frame_stack, pixels)
    rng = np.random.default_rng(0)

    def loop(with_policy: bool) -> float:
        n, t0 = 0, time.perf_counter()
        while n < steps:
            step = task.reset(seed=n)
            x = stacker.reset(step.pixels if pixels else step.state)
            while not step.done and n < steps:
                a = agent.act(x, 10**6, eval_mode=False) if with_policy else rng.uniform(-1, 1, ts.action_dim)
                step = task.step(a)
                if with_policy:
                    x = stacker.push(step.pixels if pixels else step.state)
                n += 1
        return n * ts.action_repeat / (time.perf_counter() - t0)

    out = {"bare_env": loop(False), "acting_loop": loop(True)}
    out["ratio"] = out["acting_loop"] / out["bare_env"]
    task.close()
    return out


def bench_act(iters: int, device: str) -> dict:
    """Acting with an image goal: obs and goal through the encoder separately (eager) vs in one call (ours)."""
    spec = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3)
    agent = ExpertAgent(spec, AgentConfig(num_expl_steps=0), device, goal=np.zeros((3, 84, 84), np.uint8))
    x = np.random.default_rng(0).integers(0, 256, (9, 84, 84), dtype=np.uint8)

    @torch.no_grad()
    def eager() -> np.ndarray:
        o = torch.as_tensor(x, device=agent.device)[None]
        obs_f, goal_f = agent.nets.features(o, agent._goal_batch(1))
        return agent.nets.actor(obs_f, goal_f)[0].cpu().numpy()

    fns = {"eager": eager, "ours": lambda: agent.act(x, 10**6, eval_mode=True)}
    return _race(fns, iters)


def bench_replay(iters: int) -> dict:
    """Sampling 256 stacked 84x84x9 transitions: stack-then-scatter per episode (eager) vs in-place gather (ours)."""
    from polytask.learning.data.episodes import Episode
    from polytask.learning.data.frames import stack_window
    from polytask.learning.data.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    buf = ReplayBuffer(150000, pixels=True, frame_stack=3, n_step=3)
    for _ in range(100):
        buf.add(Episode(task="bench/x", state=np.zeros((126, 3), np.float32), action=np.zeros((125, 4), np.float32),
                        reward=np.zeros(125, np.float32), success=np.zeros(125, bool), source="replay",
                        pixels=rng.integers(0, 256, (126, 84, 84, 3), dtype=np.uint8)), persist=False)

    def eager() -> None:
        ep_idx, t_idx = buf._pick(256)
        obs = np.empty((256, 9, 84, 84), np.uint8)
        nxt = np.empty_like(obs)
        for e in np.unique(ep_idx):
            rows = np.nonzero(ep_idx == e)[0]
            st = buf._episodes[e]
            obs[rows] = stack_window(st.obs, t_idx[rows], 3, True)
            nxt[rows] = stack_window(st.obs, np.minimum(t_idx[rows] + 3, st.length), 3, True)

    fns = {"eager": eager, "ours": lambda: buf.sample(256)}
    return _race(fns, iters)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--pixel-batch", type=int, default=256)
    p.add_argument("--pixel-iters", type=int, default=3)
    p.add_argument("--state-iters", type=int, default=20)
    p.add_argument("--env-steps", type=int, default=300)
    p.add_argument("--skip-env", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
               f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch threads "
               f"{torch.get_num_threads()}")
    res: dict = {"device": args.device, "machine": machine, "torch": torch.__version__}
    res["act_pixels_image_goal"] = bench_act(30, args.device)
    res["replay_sample_b256_84x84x9"] = bench_replay(20)
    print(json.dumps(res, indent=1), flush=True)
    state_spec = NetworkSpec("state", (17,), 6, "sinusoid", goal_dim=16)
    res["state_update_b256_obs17"] = bench_updates(state_spec, np.zeros(16, np.float32), 256, args.state_iters,
                                                   args.device)
    print(json.dumps(res, indent=1), flush=True)
    pix_spec = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3)
    res[f"pixel_update_b{args.pixel_batch}_84x84x9"] = bench_updates(
        pix_spec, np.zeros((3, 84, 84), np.uint8), args.pixel_batch, args.pixel_iters, args.device)
    print(json.dumps(res, indent=1), flush=True)
    if not args.skip_env:
        res["env_xarm_reach_state"] = bench_env("xarm/reach", False, args.env_steps, args.device)
        res["env_xarm_reach_pixels"] = bench_env("xarm/reach", True, args.env_steps // 3, args.device)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
