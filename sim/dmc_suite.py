"""DMC cheetah-run with 10 torso lengths: the paper's multi-morphology suite.

Variant i has the torso capsule's half-length L = 0.5 + 0.1 i (0.5 is dm_control's own cheetah); the head
and both thighs move with the torso's ends so the body stays connected. The model is generated at load time from
dm_control's own XML (`cheetah.get_model_and_assets()`), so it tracks the installed dm_control and nothing is
copied into this repository. Note the model sets a total mass of 14, so a longer torso takes mass from the legs.

Agent view: state = position without x (8) + velocity (9) = 17-D, action 6-D, action repeat 2, 1000 simulator
steps (500 agent steps) per episode, score = return over the 1000 simulator steps / 1000, pixels 84x84 from
the torso-tracking `side` camera (camera 0, DrQ-v2's choice for cheetah), moved back for longer torsos.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from polytask.sim.mujoco_render import apply_render_quality
from polytask.sim.registry import register
from polytask.sim.task import Task, TaskSpec

TORSO_HALF_LENGTHS = tuple(round(0.5 + 0.1 * i, 1) for i in range(10))  # 0.5 .. 1.4
STOCK_HALF_LENGTH = 0.5
HEAD_OFFSET = (0.1, 0.1)  # stock head at (.6, .1): 0.1 beyond the torso's front end, 0.1 up
SIM_STEPS = 1000  # 10 s at dm_control's 0.01 s timestep
ACTION_REPEAT = 2
CAMERA = "side"
SIDE_CAMERA_DISTANCE = 3.0  # stock `side` camera: pos="0 -3 0"
STATE_DIM = 17
ACTION_DIM = 6


def _fmt(*values: float) -> str:
    return " ".join(f"{v:g}" for v in values)


def cheetah_xml(half_length: float) -> tuple[str, dict[str, bytes]]:
    """dm_control's cheetah XML with the torso's half-length set to `half_length` (metres); returns (xml, assets).

    Edits exactly: torso geom `fromto`, head geom `pos`, bthigh/fthigh body `pos`. Raises if the installed
    dm_control's model no longer has these elements (the variants would silently be wrong otherwise).
    """
    if not (0.1 <= half_length <= 3.0):
        raise ValueError(f"cheetah torso half-length {half_length} m outside the sane range 0.1..3.0")
    from dm_control.suite import cheetah  # dm_control loads MuJoCo: only when a task is made

    xml, assets = cheetah.get_model_and_assets()
    root = ET.fromstring(xml)

    def one(path: str) -> ET.Element:
        found = root.findall(path)
        if len(found) != 1:
            raise RuntimeError(f"dm_control cheetah.xml: expected one element {path!r}, found {len(found)}; "
                               f"the torso-length variants need dm_control==1.0.28's model")
        return found[0]

    one(".//geom[@name='torso']").set("fromto", _fmt(-half_length, 0, 0, half_length, 0, 0))
    one(".//geom[@name='head']").set("pos", _fmt(half_length + HEAD_OFFSET[0], 0, HEAD_OFFSET[1]))
    one(".//body[@name='bthigh']").set("pos", _fmt(-half_length, 0, 0))
    one(".//body[@name='fthigh']").set("pos", _fmt(half_length, 0, 0))
    # Pull the tracking camera back in proportion to the body's length so a long cheetah stays in frame
    # (the stock camera, 3 m to the side, is kept exactly for the stock length).
    side = one(".//camera[@name='side']")
    side.set("pos", _fmt(0, -SIDE_CAMERA_DISTANCE * (half_length + 0.6) / (STOCK_HALF_LENGTH + 0.6), 0))
    return ET.tostring(root, encoding="unicode"), assets


def task_spec(variant: int) -> TaskSpec:
    """The static facts of one torso variant (no simulator needed); DMC scores by return, so no success rule."""
    return TaskSpec(name=f"dmc/cheetah-run-torso-{variant}", suite="dmc", task_id=variant, state_dim=STATE_DIM,
                    action_dim=ACTION_DIM, horizon=SIM_STEPS // ACTION_REPEAT, action_repeat=ACTION_REPEAT, n_step=3,
                    language=f"run forward with a torso {2 * TORSO_HALF_LENGTHS[variant]:g} m long",
                    has_success=False)


class CheetahRunTorso(Task):
    """Cheetah-run on one torso-length variant, driven through dm_control's own task (reward, reset noise)."""

    def __init__(self, variant: int, render: bool = True, quality: str = "fast") -> None:
        if not 0 <= variant < len(TORSO_HALF_LENGTHS):
            raise ValueError(f"cheetah torso variant {variant} unknown; expected 0..{len(TORSO_HALF_LENGTHS) - 1}")
        self.variant = variant
        self.half_length = TORSO_HALF_LENGTHS[variant]
        super().__init__(task_spec(variant), render=render)
        from dm_control.suite import cheetah  # as above: not when the suite registers

        xml, assets = cheetah_xml(self.half_length)
        self.physics = cheetah.Physics.from_xml_string(xml, assets)
        apply_render_quality(self.physics.model.ptr, quality)  # before the first render creates the context
        self._env = None
        self._seed_rng = np.random.default_rng()

    def _make_env(self, seed: int):
        """A dm_control Environment on our physics. No time limit there: the horizon lives in Task, once."""
        from dm_control.rl import control  # as above
        from dm_control.suite import cheetah

        return control.Environment(self.physics, cheetah.Cheetah(random=seed), time_limit=float("inf"))

    def _reset(self, seed: int | None) -> np.ndarray:
        if seed is None:
            seed = int(self._seed_rng.integers(2**31 - 1))
        self._env = self._make_env(seed)
        return self._state(self._env.reset().observation)

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._env is None:
            raise RuntimeError(f"task {self.spec.name}: step() before reset()")
        ts = self._env.step(action)
        return self._state(ts.observation), float(ts.reward or 0.0), False, False, {}

    @staticmethod
    def _state(observation: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([observation["position"], observation["velocity"]]).astype(np.float32)

    def _render(self) -> np.ndarray:
        size = self.spec.image_size
        return self.physics.render(height=size, width=size, camera_id=CAMERA)

    def score(self) -> float:
        """DMC's rule: episode return over the 1000 simulator steps, divided by 1000 (so 0..1)."""
        return self.episode_return / SIM_STEPS

    def close(self) -> None:
        self.physics.free()


def _factory(variant: int):
    def make(render: bool = True, quality: str = "fast", **options: Any) -> CheetahRunTorso:
        if options:
            raise TypeError(f"task dmc/cheetah-run-torso-{variant}: unknown option(s) {sorted(options)}")
        return CheetahRunTorso(variant, render=render, quality=quality)

    return make


for _i, _length in enumerate(TORSO_HALF_LENGTHS):
    register(f"dmc/cheetah-run-torso-{_i}", _factory(_i), f"cheetah-run, torso capsule half-length {_length} m",
             spec=task_spec(_i))
