"""Franka Kitchen's seven elements and when each counts as completed: the rules the suite scores by, the scripted
experts steer by and the play-data segmenter cuts by. Plain numpy on a qpos vector, no simulator, so listing tasks,
segmenting play files and scoring never start MuJoCo.

- the env's own rule (`loose_complete`): the element's joints within 0.3 (L2) of the goal — loose: a slide cabinet
  0.074 m of 0.37 m open counts. Kept for the side-effect penalty.
- PolyTask's rule (`strict_complete`, see `StrictRule`): what demos and evaluation use.
- the paper's score (`kitchen_score`): +1 for the target element, -2 for each OTHER element completed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOOSE_THRESHOLD = 0.3  # gymnasium_robotics.envs.franka_kitchen.kitchen_env.BONUS_THRESH

# qpos indices and goals of every element, as in kitchen_env.OBS_ELEMENT_INDICES / OBS_ELEMENT_GOALS (copied so
# that listing tasks needs no simulator import; a test checks they agree with the installed env).
ELEMENT_QPOS: dict[str, tuple[int, ...]] = {
    "bottom burner": (11, 12),
    "top burner": (15, 16),
    "light switch": (17, 18),
    "slide cabinet": (19,),
    "hinge cabinet": (20, 21),
    "microwave": (22,),
    "kettle": (23, 24, 25, 26, 27, 28, 29),
}
ELEMENT_GOAL: dict[str, tuple[float, ...]] = {
    "bottom burner": (-0.88, -0.01),
    "top burner": (-0.92, -0.01),
    "light switch": (-0.69, -0.05),
    "slide cabinet": (0.37,),
    "hinge cabinet": (0.0, 1.45),
    "microwave": (-0.75,),
    "kettle": (-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06),
}
ELEMENTS: tuple[str, ...] = tuple(ELEMENT_QPOS)


@dataclass(frozen=True)
class StrictRule:
    """Strict completion of one element.

    Joint elements: the driving joint (qpos index `joint`) has covered at least `fraction` of the way from its
    rest value to the goal (going further in the same direction also counts: a cabinet opened past 0.37 m is open).
    The kettle: within KETTLE_POS_TOL (horizontally) of the goal, standing on the stove (height within
    KETTLE_HEIGHT_TOL of the goal's) and upright (tilt <= KETTLE_TILT).
    """

    joint: int | None
    rest: float = 0.0
    goal: float = 0.0
    fraction: float = 0.9


STRICT_FRACTION = 0.9
KETTLE_POS_TOL = 0.05  # m, horizontal distance of the kettle's free-joint position to the goal position
KETTLE_HEIGHT_TOL = 0.02  # m: the kettle stands on the burner (one carried past the goal does not count)
KETTLE_TILT = 0.25  # rad between the kettle's up axis and the world's

STRICT_RULES: dict[str, StrictRule] = {
    "bottom burner": StrictRule(joint=11, rest=0.0, goal=-0.88),  # knob 2 angle; 0.9 -> <= -0.792 rad
    "top burner": StrictRule(joint=15, rest=0.0, goal=-0.92),  # knob 4 angle; 0.9 -> <= -0.828 rad
    "light switch": StrictRule(joint=17, rest=0.0, goal=-0.69),  # switch slide; 0.9 -> <= -0.621
    "slide cabinet": StrictRule(joint=19, rest=0.0, goal=0.37),  # 0.9 -> >= 0.333 m open
    "hinge cabinet": StrictRule(joint=21, rest=0.0, goal=1.45),  # right door; 0.9 -> >= 1.305 rad
    "microwave": StrictRule(joint=22, rest=0.0, goal=-0.75),  # door; 0.9 -> <= -0.675 rad
    "kettle": StrictRule(joint=None),
}

# name suffix, element, sentence a language goal embeds
TASKS: tuple[tuple[str, str, str], ...] = (
    ("bottom-burner", "bottom burner", "turn the knob of the bottom burner"),
    ("top-burner", "top burner", "turn the knob of the top burner"),
    ("light-switch", "light switch", "flip the light switch"),
    ("slide-cabinet", "slide cabinet", "slide the cabinet door open"),
    ("microwave", "microwave", "open the microwave door"),
    ("kettle", "kettle", "move the kettle to the top left burner"),
)

def loose_complete(qpos: np.ndarray, element: str) -> bool:
    """The env's own rule: L2 distance of the element's joints to its goal below 0.3."""
    idx = list(ELEMENT_QPOS[element])
    return float(np.linalg.norm(np.asarray(qpos)[idx] - np.asarray(ELEMENT_GOAL[element]))) < LOOSE_THRESHOLD


def kettle_error(qpos: np.ndarray) -> tuple[float, float, float]:
    """(horizontal distance of the kettle to its goal in m, height above/below the goal in m, tilt of its up axis in
    rad) from the full qpos."""
    q = np.asarray(qpos, dtype=np.float64)
    offset = q[23:26] - np.asarray(ELEMENT_GOAL["kettle"][:3])
    w, x, y, z = q[26:30]
    dist = float(np.linalg.norm(offset[:2]))
    # z component of the body's z axis for the quaternion (w, x, y, z), normalised
    up_z = 1.0 - 2.0 * (x * x + y * y) / max(float(w * w + x * x + y * y + z * z), 1e-12)
    return dist, float(offset[2]), float(np.arccos(np.clip(up_z, -1.0, 1.0)))


def element_progress(qpos: np.ndarray, element: str) -> float:
    """Fraction of the way from rest to goal of a joint element (1.0 = at the goal); nan for the kettle."""
    rule = STRICT_RULES[element]
    if rule.joint is None:
        return float("nan")
    return float((np.asarray(qpos)[rule.joint] - rule.rest) / (rule.goal - rule.rest))


def strict_complete(qpos: np.ndarray, element: str) -> bool:
    """PolyTask's strict rule (see StrictRule); the one demos and evaluation use."""
    rule = STRICT_RULES[element]
    if rule.joint is None:
        dist, height, tilt = kettle_error(qpos)
        return dist <= KETTLE_POS_TOL and abs(height) <= KETTLE_HEIGHT_TOL and tilt <= KETTLE_TILT
    return element_progress(qpos, element) >= rule.fraction


def completed_elements(qpos: np.ndarray, threshold: str = "strict") -> set[str]:
    """Every element complete in this simulator state under `threshold` ("strict" or "loose")."""
    check = completion_rule(threshold)
    return {e for e in ELEMENTS if check(qpos, e)}


def completion_rule(threshold: str):
    if threshold == "strict":
        return strict_complete
    if threshold == "loose":
        return loose_complete
    raise ValueError(f"kitchen threshold {threshold!r} unknown; expected 'strict' or 'loose'")


def kitchen_score(target: str, completed: set[str]) -> float:
    """The paper's Kitchen score: +1 if the target element was completed, -2 for each other element completed."""
    if target not in ELEMENTS:
        raise ValueError(f"kitchen element {target!r} unknown; expected one of {ELEMENTS}")
    return float(target in completed) - 2.0 * len(completed - {target})
