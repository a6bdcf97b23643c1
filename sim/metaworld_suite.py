"""Meta-World v3: the paper's 16 tasks behind the `Task` interface, with their scripted experts.

What the authors' code does, and what we keep (their `suite/metaworld.py`, `metaworld_info.py`, `train.py`):
- Placement: every reset draws one of the 50 MT1 train tasks (object and goal positions). A fixed placement makes
  every episode identical, so it is an option (`fixed_placement`), not the default.
- Horizon: 125 simulator steps (bin-picking 175), counted BELOW the action repeat, so at action repeat 2 an
  episode is ceil(125 / 2) = 63 agent steps (88 for bin-picking). The Meta-World env's own `max_path_length`
  (500) is lifted so that only our horizon ends an episode.
- Success: the env's success flag is read once per agent step and the episode succeeds when it was on for MORE
  than 10 agent steps (`np.sum(path) > 10` in their evaluation). The authors read the flag of the last simulator
  step of an action repeat; `Task.step` ORs the flags of the repeat's steps. Meta-World's flags rarely flicker
  within two steps, so the two counts agree on scripted demos (docs/results-metaworld.md).
- Cameras: the authors' per-task choice of `corner` / `corner3`. These cameras are defined with their image-up
  axis pointing DOWN (a mujoco-py-era convention, where frames were read bottom-up), so under mujoco 3 they render
  upside down; we rotate their frames by 180 degrees, which gives the true upright view. The rotation is derived
  from the camera's orientation, not from its name.
- Scripted experts: `metaworld.policies` on the 39-D state only, so stored states can be relabelled offline.
  door-open, bin-picking and plate-slide-side get corrected policies (`DoorOpenPolicy`, `BinPickingPolicy`,
  `PlateSlideSidePolicy`), and five tasks stop the hand once the goal is reached (`SETTLE`): see
  docs/results-metaworld.md.
"""

from __future__ import annotations

import atexit
import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from polytask.sim.mujoco_render import apply_render_quality
from polytask.sim.registry import register
from polytask.sim.task import Task, TaskSpec

SUITE = "metaworld"
STATE_DIM = 39  # hand xyz, gripper, 2 object poses (7 each), the same 18 for the previous step, goal xyz
ACTION_DIM = 4  # hand delta xyz, gripper effort
ACTION_REPEAT = 2  # Table IV
N_STEP = 3  # Table IV
SUCCESS_MIN_STEPS = 10  # success flag on for MORE than this many agent steps
N_PLACEMENTS = 50  # MT1 train tasks per environment
BENCHMARK_SEED = 0  # seeds MT1's placement list, so placement k is the same on every machine
NO_ENV_LIMIT = 10**9  # replaces the env's max_path_length: our horizon, not the env's, ends an episode


@dataclass(frozen=True)
class MetaWorldTaskInfo:
    """One of the paper's tasks: its name (no -v3 suffix), camera, horizon in simulator steps and sentence."""

    name: str
    camera: str
    sim_horizon: int
    language: str

    @property
    def env_name(self) -> str:
        return f"{self.name}-v3"

    @property
    def horizon(self) -> int:
        """Agent steps per episode at the paper's action repeat."""
        return math.ceil(self.sim_horizon / ACTION_REPEAT)


# The paper's task list; task_id is the index here. Cameras and horizons as in the authors' metaworld_info.py.
TASKS: tuple[MetaWorldTaskInfo, ...] = (
    MetaWorldTaskInfo("door-unlock", "corner", 125, "unlock the door by turning the lock"),
    MetaWorldTaskInfo("door-open", "corner3", 125, "open the door"),
    MetaWorldTaskInfo("plate-slide", "corner3", 125, "slide the plate into the goal"),
    MetaWorldTaskInfo("plate-slide-back", "corner3", 125, "slide the plate back out of the goal"),
    MetaWorldTaskInfo("plate-slide-side", "corner3", 125, "slide the plate sideways into the goal"),
    MetaWorldTaskInfo("plate-slide-back-side", "corner3", 125, "slide the plate sideways back out of the goal"),
    MetaWorldTaskInfo("coffee-button", "corner", 125, "press the button on the coffee machine"),
    MetaWorldTaskInfo("coffee-pull", "corner", 125, "pull the mug away from the coffee machine"),
    MetaWorldTaskInfo("button-press", "corner", 125, "press the button"),
    MetaWorldTaskInfo("button-press-wall", "corner", 125, "press the button behind the wall"),
    MetaWorldTaskInfo("button-press-topdown", "corner", 125, "press the button down from above"),
    MetaWorldTaskInfo("button-press-topdown-wall", "corner", 125, "press the button down from above behind the wall"),
    MetaWorldTaskInfo("bin-picking", "corner", 175, "pick the block out of one bin and place it in the other"),
    MetaWorldTaskInfo("hammer", "corner3", 125, "hammer the nail into the wall"),
    MetaWorldTaskInfo("drawer-close", "corner", 125, "close the drawer"),
    MetaWorldTaskInfo("drawer-open", "corner", 125, "open the drawer"),
)
TASK_BY_NAME: dict[str, MetaWorldTaskInfo] = {t.name: t for t in TASKS}


def episode_succeeded(success_steps: int) -> bool:
    """The authors' rule: the success flag was on for more than 10 agent steps of the episode."""
    return success_steps > SUCCESS_MIN_STEPS


def _obj_to_goal(state: np.ndarray) -> float:
    """Distance of the first object (state[4:7]) to the goal (state[36:39]): the success measure of the plates."""
    return float(np.linalg.norm(state[4:7] - state[36:39]))


def _door_to_goal(state: np.ndarray) -> float:
    """door-open succeeds on the handle's x distance to the goal (`abs(obs[4] - target[0]) <= 0.08`)."""
    return float(abs(state[4] - state[36]))


def _button_to_goal(state: np.ndarray) -> float:
    """coffee-button succeeds on the button's y distance to the goal (<= 0.02)."""
    return float(abs(state[5] - state[37]))


@dataclass(frozen=True)
class Settle:
    """Hold the hand still once the task's error (from the state alone) is under `radius`.

    Why: several stock policies push straight through the goal (the plate slides past it, the coffee button is
    pressed 3 cm beyond its 2 cm success band, the door swings past its goal). The success flag is then on for
    only ~8 agent steps at action repeat 2, short of the authors' "more than 10 steps" rule. Stopping the hand
    inside the success band keeps the flag on; the grip effort is left as the stock policy set it.
    """

    error: Callable[[np.ndarray], float]
    radius: float


# Per-task settling, as data; radii inside each success band (plates 0.07, door 0.08, button 0.02), chosen by
# sweeping all 50 placements (bench/metaworld_scripted.py --placements all). plate-slide-side's plate still ends
# ~1-2 cm off the goal's y (see PlateSlideSidePolicy), hence its wider radius; 0.055..0.065 all give 50/50.
SETTLE: dict[str, Settle] = {
    "plate-slide-back": Settle(_obj_to_goal, 0.04),
    "plate-slide-side": Settle(_obj_to_goal, 0.06),
    "plate-slide-back-side": Settle(_obj_to_goal, 0.03),
    "coffee-button": Settle(_button_to_goal, 0.008),
    "door-open": Settle(_door_to_goal, 0.03),
}


def _toward(hand: np.ndarray, target: np.ndarray, gain: float = 25.0) -> np.ndarray:
    """Proportional hand motion toward a target, the controller every Meta-World scripted policy uses."""
    return gain * (np.asarray(target, dtype=np.float64) - hand)


class DoorOpenPolicy:
    """door-open expert. Why not the stock `SawyerDoorOpenV3Policy`: it descends to the handle's height as soon as
    the hand is within 12 cm (xy) of its pre-grasp point. Coming from the start pose the hand is often still
    8-10 cm short in x, so it comes down onto the door next to the handle, pushes it the wrong way and stalls
    there (6 of the 50 MT1 placements fail at action repeat 2, and 1 in 5 in the earlier measurement). Here the
    hand first aligns within 2 cm above the pre-grasp point (10 cm above the handle), then descends straight
    down, then pushes the handle round as the stock policy does; if it loses the handle it climbs and re-aligns.
    """

    HOVER = 0.10  # height above the handle while aligning
    ALIGN = 0.02  # xy tolerance before descending
    LOST = 0.12  # xy distance at handle height that means the handle was lost

    def get_action(self, state: np.ndarray) -> np.ndarray:
        hand = state[:3]
        handle = state[4:7].copy()
        handle[0] -= 0.05
        pre_grasp = handle + np.array([0.06, 0.02, 0.0])
        above = pre_grasp + np.array([0.0, 0.0, self.HOVER])
        at_handle_height = abs(hand[2] - handle[2]) <= 0.04
        off_xy = float(np.linalg.norm(hand[:2] - pre_grasp[:2]))
        if not at_handle_height:
            target = above if off_xy > self.ALIGN else pre_grasp
        elif off_xy > self.LOST:
            target = above
        else:
            target = handle
        return np.append(_toward(hand, target), 1.0)


class BinPickingPolicy:
    """bin-picking expert: the stock `SawyerBinPickingV3Policy` with its grasp point kept off the start bin's walls.

    The stock policy already pulls its grasp point's y into [0.675, 0.725] so the open fingers (which close along
    y) clear the bin's front and back walls. Two placements in fifty still fail: a cube against the front wall
    (y 0.65) puts the -y finger ON the cube at y 0.675. And cubes against the +x wall (x > -0.045) let the claws
    land on the wall's top. We use y in [0.665, 0.725] and x <= -0.05 while the cube lies in the start bin; then
    all 50 placements succeed (bench/metaworld_scripted.py --placements all).
    """

    BIN_GOAL = np.array([0.12, 0.7, 0.02])
    Y_RANGE = (0.665, 0.725)
    X_MAX_IN_START_BIN = -0.05

    def _grasp_point(self, state: np.ndarray) -> np.ndarray:
        point = state[4:7] + np.array([0.0, 0.0, 0.03])
        point[1] = np.clip(point[1], *self.Y_RANGE)
        if state[6] < 0.04 and state[4] < 0.0:  # resting in the start bin
            point[0] = min(point[0], self.X_MAX_IN_START_BIN)
        return point

    def get_action(self, state: np.ndarray) -> np.ndarray:
        hand = state[:3]
        grasp = self._grasp_point(state)
        off_xy = float(np.linalg.norm(hand[:2] - grasp[:2]))
        if off_xy > 0.02:
            target = grasp + np.array([0.0, 0.0, 0.15])
        elif abs(hand[2] - grasp[2]) > 0.01:
            target = grasp
        elif np.linalg.norm(hand[:2] - self.BIN_GOAL[:2]) > 0.02:
            target = hand + np.array([0.0, 0.0, 0.1]) if hand[2] < 0.15 else np.array([*self.BIN_GOAL[:2], 0.18])
        else:
            target = self.BIN_GOAL
        grip = -1.0 if off_xy > 0.02 or abs(hand[2] - grasp[2]) > 0.02 else 0.6
        return np.append(_toward(hand, target), grip)


class PlateSlideSidePolicy:
    """plate-slide-side expert: the stock `SawyerPlateSlideSideV3Policy` steered toward the goal's y.

    The stock policy pushes the plate along y = 0.6 whatever the goal, but MT1 places the goal at y in
    [0.54, 0.66]; for goals below y ~0.55 the plate passes 6.5 cm or more from the goal and the success flag
    (distance <= 0.07) is on for only 2-6 steps (7 of 50 placements fail). Here the push aims at
    y = 0.6 + 0.7 * (goal_y - 0.6): all 50 placements succeed (0.6..0.8 all do; 1.0 drags the plate off the hand).
    """

    STEER = 0.7

    def get_action(self, state: np.ndarray) -> np.ndarray:
        hand, goal = state[:3], state[36:39]
        behind_plate = state[4:7] + np.array([0.07, 0.0, -0.005])
        if np.linalg.norm(hand[:2] - behind_plate[:2]) > 0.04:
            target = behind_plate + np.array([0.0, 0.0, 0.1])
        elif abs(hand[2] - behind_plate[2]) > 0.04:
            target = behind_plate
        elif hand[0] > -0.2:
            target = np.array([hand[0] - 0.1, 0.6 + self.STEER * (goal[1] - 0.6), hand[2]])
        else:
            target = behind_plate + np.array([-0.1, 0.0, 0.0])
        return np.append(_toward(hand, target), 1.0)


# Tasks whose stock policy we replace (see each class for why); the rest use metaworld.policies as shipped.
POLICY_OVERRIDES: dict[str, Callable[[], Any]] = {
    "door-open": DoorOpenPolicy,
    "bin-picking": BinPickingPolicy,
    "plate-slide-side": PlateSlideSidePolicy,
}


class ScriptedExpert:
    """A task's scripted expert: a `metaworld.policies` policy (or our override), optionally settled at the goal.

    A function of the 39-D state only (no memory, no simulator access), so stored states can be relabelled.
    """

    def __init__(self, name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP  # the simulator package: loaded with the first task

        info = TASK_BY_NAME[name]
        if name in POLICY_OVERRIDES:
            self._policy = POLICY_OVERRIDES[name]()
        elif info.env_name in ENV_POLICY_MAP:
            self._policy = ENV_POLICY_MAP[info.env_name]()
        else:
            raise KeyError(f"metaworld.policies has no scripted policy for {info.env_name!r}")
        self._settle = SETTLE.get(name)

    def get_action(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        with warnings.catch_warnings():  # "Constant(s) may be too high": we clip, as the env does
            warnings.simplefilter("ignore", UserWarning)
            action = np.asarray(self._policy.get_action(state.copy()), dtype=np.float64)  # some policies edit obs
        if self._settle is not None and self._settle.error(state) < self._settle.radius:
            action[:3] = 0.0
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def task_spec(info: MetaWorldTaskInfo, image_size: int = 84) -> TaskSpec:
    """The static facts of one of the paper's tasks (no simulator needed)."""
    return TaskSpec(name=f"{SUITE}/{info.name}", suite=SUITE, task_id=TASKS.index(info), state_dim=STATE_DIM,
                    action_dim=ACTION_DIM, horizon=info.horizon, action_repeat=ACTION_REPEAT, image_size=image_size,
                    n_step=N_STEP, language=info.language)


class MetaWorldTask(Task):
    """One Meta-World v3 task: pixels from a scene camera and/or the 39-D state, placement drawn per reset."""

    def __init__(self, name: str, *, render: bool = True, quality: str = "fast", fixed_placement: int | None = None,
                 camera: str | None = None, image_size: int = 84, seed: int | None = None) -> None:
        if name not in TASK_BY_NAME:
            raise KeyError(f"unknown Meta-World task {name!r}; expected one of {sorted(TASK_BY_NAME)}")
        if fixed_placement is not None and not 0 <= int(fixed_placement) < N_PLACEMENTS:
            raise ValueError(f"metaworld/{name}: fixed_placement={fixed_placement} out of range, expected an MT1 "
                             f"train task index in [0, {N_PLACEMENTS - 1}] or None (drawn at every reset)")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or not 8 <= image_size <= 2048:
            raise ValueError(f"metaworld/{name}: image_size={image_size!r}, expected an int in [8, 2048] (84 in the "
                             f"paper)")
        self.info = TASK_BY_NAME[name]
        super().__init__(task_spec(self.info, image_size), render=render)

        import metaworld  # imported here so that listing tasks does not load the simulator

        self.camera = camera or self.info.camera
        self.fixed_placement = None if fixed_placement is None else int(fixed_placement)
        self._mt1 = metaworld.MT1(self.info.env_name, seed=BENCHMARK_SEED)
        env_cls = self._mt1.train_classes[self.info.env_name]
        # No gymnasium renderer: its OffScreenViewer never makes its GL context current before drawing, so with
        # two tasks in one process (train + eval, or 16 tasks in a multi-task evaluation) every frame is drawn
        # into the LAST created context and comes out as garbage. mujoco.Renderer makes its context current.
        self._env = env_cls(render_mode=None)
        self._env.max_path_length = NO_ENV_LIMIT
        self._renderer = None
        _OPEN_TASKS.add(self)
        apply_render_quality(self._env.model, quality)  # before the renderer creates its GL context
        self._rotate_180 = _camera_upside_down(self._env, self.camera)
        if render:
            import mujoco  # with the first task, not when the suite registers

            self._renderer = mujoco.Renderer(self._env.model, height=image_size, width=image_size)
            _register_exit_hook()
        self._rng = np.random.default_rng(seed)
        self._policy = ScriptedExpert(name)
        self.placement: int | None = None
        self._env.set_task(self._mt1.train_tasks[self.fixed_placement or 0])

    # --- Task primitives -------------------------------------------------------------------------------
    def _reset(self, seed: int | None) -> np.ndarray:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self.fixed_placement is None:
            self.placement = int(self._rng.integers(N_PLACEMENTS))
        else:
            self.placement = self.fixed_placement
        self._env.set_task(self._mt1.train_tasks[self.placement])
        obs, _ = self._env.reset()
        return obs

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, _terminated, _truncated, info = self._env.step(action)
        info = dict(info, placement=self.placement)
        return obs, float(reward), bool(info.get("success", False)), False, info

    def _render(self) -> np.ndarray:
        if self._renderer is None:
            raise RuntimeError(f"{self.spec.name}: built with render=False, so it has no camera to render")
        self._renderer.update_scene(self._env.data, camera=self.camera)
        frame = self._renderer.render()
        if self._rotate_180:
            frame = frame[::-1, ::-1]
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def score(self) -> float:
        return float(episode_succeeded(self._success_steps))

    def scripted_action(self, step) -> np.ndarray:
        """The scripted expert's action for `step.state` alone (no hidden simulator state), clipped to [-1, 1]."""
        state = np.asarray(step.state, dtype=np.float64).reshape(-1)
        if state.shape[0] != STATE_DIM:
            raise ValueError(f"{self.spec.name}: scripted_action needs the {STATE_DIM}-D state, got "
                             f"{state.shape[0]} values")
        return self._policy.get_action(state)

    def close(self) -> None:
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            try:
                renderer.close()
            except Exception:
                if not _exit_hook["exiting"]:
                    raise
                # At exit another library (dm_control) may have terminated the shared EGL display first: drop the
                # dead contexts so that the renderer's __del__ does not try to free them again and print errors.
                gl_context = getattr(renderer, "_gl_context", None)
                if gl_context is not None and hasattr(gl_context, "_context"):
                    gl_context._context = None
                renderer._gl_context = None
                renderer._mjr_context = None
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close()

    @property
    def success_steps(self) -> int:
        """Agent steps so far in this episode with the success flag on."""
        return self._success_steps


# Tasks still open at interpreter exit are closed before EGL tears down; otherwise the renderer's __del__ runs
# after the GL display is gone and prints EGLError tracebacks. The hook is registered once the first renderer
# exists, i.e. after mujoco.egl registered its own teardown, so that (atexit being last-in, first-out) ours runs
# first.
_OPEN_TASKS: weakref.WeakSet[MetaWorldTask] = weakref.WeakSet()
_exit_hook = {"registered": False, "exiting": False}


def _close_open_tasks() -> None:
    _exit_hook["exiting"] = True
    for task in list(_OPEN_TASKS):
        task.close()


def _register_exit_hook() -> None:
    if not _exit_hook["registered"]:
        _exit_hook["registered"] = True
        atexit.register(_close_open_tasks)


def _camera_upside_down(env: Any, camera: str) -> bool:
    """True when the camera's image-up axis points below the horizon (its frames need a 180 degree rotation)."""
    import mujoco  # with the first task, not when the suite registers

    cam_id = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if cam_id < 0:
        raise KeyError(f"Meta-World model has no camera {camera!r}")
    mujoco.mj_forward(env.model, env.data)
    up_world = env.data.cam_xmat[cam_id].reshape(3, 3)[:, 1]
    return bool(up_world[2] < 0.0)


for _info in TASKS:
    register(f"{SUITE}/{_info.name}", partial(MetaWorldTask, _info.name), description=_info.language,
             spec=task_spec(_info))
