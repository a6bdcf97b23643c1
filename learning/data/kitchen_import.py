"""Kitchen play snippets -> Episodes: the paper's Kitchen demos (segments of play data) in PolyTask's store.

`polytask.sim.kitchen_play` finds and cuts the snippets (sim never imports learning); this module resamples them to
the agent's rate and writes Episode objects:
- rate: a snippet recorded at `env_steps_per_action` env steps per action is resampled to the task's
  `action_repeat` (relay/D4RL data: 1 env step per action, agent steps of 2 -> every 2nd observation, and the mean
  of each pair of actions, which moves the joints as far as the two did);
- states: kept when the snippet has FrankaKitchen-v1 observations, otherwise rebuilt from the joint positions
  (velocities by finite differences); pixels: kept, or rendered by kinematic playback when `render=True`;
- labels: reward 1 and success True on the snippet's last step (the step its element completes), score by the
  paper's rule (+1, -2 for each other element the snippet completed), source "play".
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import numpy as np

from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.sim import registry
from polytask.sim.kitchen_elements import kitchen_score
from polytask.sim.kitchen_play import ELEMENT_TASK, Snippet, record_play, render_qpos, segment, states_from_qpos

log = logging.getLogger(__name__)
ENV_DT = 0.08  # s per FrankaKitchen-v1 env step (frame_skip 40 x timestep 0.002)


def resample_indices(n_actions: int, stride: int) -> np.ndarray:
    """Observation indices kept when every `stride` actions become one: 0, stride, 2*stride, ... and always the
    last observation (the completion), so a snippet never loses the step that labels it."""
    idx = list(range(0, n_actions + 1, stride))
    if idx[-1] != n_actions:
        idx.append(n_actions)
    return np.asarray(idx, dtype=np.int64)


def snippet_to_episode(snippet: Snippet, task=None, *, render: bool = False, quality: str = "fast") -> Episode:
    """One snippet as an Episode of its task (created from the registry unless given)."""
    if snippet.task is None:
        raise ValueError(f"snippet of element {snippet.element!r} has no PolyTask task (only the six are tasks)")
    own_task = task is None
    if own_task:
        task = registry.make(snippet.task, render=render, quality=quality)
    try:
        repeat = task.spec.action_repeat
        if repeat % snippet.env_steps_per_action != 0:
            raise ValueError(f"snippet recorded at {snippet.env_steps_per_action} env steps per action cannot be "
                             f"resampled to action_repeat {repeat} of {snippet.task}")
        stride = repeat // snippet.env_steps_per_action
        idx = resample_indices(len(snippet), stride)
        actions = np.stack([snippet.actions[a:b].mean(axis=0) for a, b in itertools.pairwise(idx)])
        if snippet.states is not None:
            states = snippet.states[idx]
        else:
            states = states_from_qpos(task, snippet.qpos[idx], dt=ENV_DT * repeat)
        pixels = None
        if snippet.frames is not None:
            pixels = snippet.frames[idx]
        elif render:
            pixels = render_qpos(task, snippet.qpos[idx])
        n = len(idx) - 1
        reward = np.zeros(n, dtype=np.float32)
        success = np.zeros(n, dtype=bool)
        reward[-1], success[-1] = 1.0, True
        episode = Episode(
            task=snippet.task, task_id=task.spec.task_id, state=states.astype(np.float32),
            action=np.clip(actions, -1.0, 1.0).astype(np.float32), reward=reward, success=success,
            pixels=pixels, episode_success=True,
            score=kitchen_score(snippet.element, {snippet.element, *snippet.side_effects}), source="play",
            extra={"play_source": snippet.source, "start": snippet.start, "end": snippet.end,
                   "element": snippet.element, "side_effects": snippet.side_effects, "stride": stride})
        episode.validate(f"snippet {snippet.source}[{snippet.start}:{snippet.end}]")
        return episode
    finally:
        if own_task:
            task.close()


def import_play(trajectories: Iterable, store: EpisodeStore | None = None, *, threshold: str = "strict",
                render: bool = False, tasks: set[str] | None = None, quality: str = "fast") -> list[Episode]:
    """Segment play trajectories and convert every snippet of a PolyTask task (optionally only `tasks`).

    Episodes are appended to `store` when given. Snippets of other elements (hinge cabinet) are skipped.
    """
    made: dict[str, object] = {}
    episodes = []
    try:
        for traj in trajectories:
            for snip in segment(traj, threshold=threshold):
                if snip.task is None or (tasks is not None and snip.task not in tasks):
                    continue
                if snip.task not in made:
                    made[snip.task] = registry.make(snip.task, render=render, quality=quality)
                ep = snippet_to_episode(snip, made[snip.task], render=render)
                episodes.append(ep)
                if store is not None:
                    store.append(ep)
    finally:
        for task in made.values():
            task.close()
    log.info("imported %d kitchen play snippets", len(episodes))
    return episodes


def record_play_snippets(n_chains: int, store: EpisodeStore | None = None, *, chain_length: int = 4, seed: int = 0,
                         init_noise: float = 0.1, render: bool = False, quality: str = "fast") -> list[Episode]:
    """The paper's Kitchen demo protocol on play data made here: `n_chains` random chains of `chain_length`
    distinct elements (scripted, see `record_play`), segmented and imported as task snippets."""
    if not 1 <= chain_length <= len(ELEMENT_TASK):
        raise ValueError(f"chain_length={chain_length}, expected 1..{len(ELEMENT_TASK)}")
    rng = np.random.default_rng(seed)
    elements = list(ELEMENT_TASK)
    episodes = []
    for i in range(n_chains):
        order = [str(e) for e in rng.choice(elements, size=chain_length, replace=False)]
        traj = record_play(order, seed=seed + i, init_noise=init_noise, render=render, quality=quality)
        episodes.extend(import_play([traj], store, render=False, quality=quality))
    return episodes
