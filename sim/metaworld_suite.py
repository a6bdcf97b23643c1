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
- Scripted experts (sim/metaworld_scripted.py): `metaworld.policies` on the 39-D state only, so stored states can
  be relabelled offline.
  door-open, bin-picking and plate-slide-side get corrected policies (`DoorOpenPolicy`, `BinPickingPolicy`,
  `PlateSlideSidePolicy`), and five tasks stop the hand once the goal is reached (`SETTLE`): see
  docs/results-metaworld.md.
"""

from __future__ import annotations

import atexit
import math
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from polytask.sim.metaworld_scripted import ScriptedExpert
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
