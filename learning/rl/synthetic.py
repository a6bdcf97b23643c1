"""Random replay and demo batches of the shapes a network spec takes.

Why: the fast-path equivalence tests and the update benchmarks only care about the arithmetic of an update, not
about what the data means; one builder keeps their batches identical (same shapes, same draws from the same
generator) so a benchmark measures exactly what a test proves equal.
"""

from __future__ import annotations

import numpy as np

from polytask.learning.nets.drqv2 import NetworkSpec


def random_batches(spec: NetworkSpec, n: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """(an n-row replay batch: obs, next_obs, action, reward, discount 0.97; an n-row demo batch: obs, action)."""
    if spec.obs_modality == "pixels":
        shape = (n, spec.in_channels, *spec.obs_shape[1:])

        def obs() -> np.ndarray:
            return rng.integers(0, 256, shape, dtype=np.uint8)
    else:

        def obs() -> np.ndarray:
            return rng.normal(size=(n, spec.obs_shape[0])).astype(np.float32)

    batch = {
        "obs": obs(),
        "next_obs": obs(),
        "action": rng.uniform(-1, 1, (n, spec.action_dim)).astype(np.float32),
        "reward": rng.normal(size=(n, 1)).astype(np.float32),
        "discount": np.full((n, 1), 0.97, np.float32),
    }
    return batch, {"obs": obs(), "action": rng.uniform(-1, 1, (n, spec.action_dim)).astype(np.float32)}
