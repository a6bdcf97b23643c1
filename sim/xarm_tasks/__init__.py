"""The paper's ten xArm robot tasks in MuJoCo, on the simulated arm of polytask.sim.xarm_arm.

One module per task family, each with its variants as data (`VARIANTS`); this package registers them all:

| family | tasks | module |
|---|---|---|
| peg on a string into a cup | `xarm/peg-green`, `xarm/peg-yellow`, `xarm/peg-blue` | peg.py |
| pour grains into a cup | `xarm/pour-left`, `xarm/pour-right` | pour.py |
| open a box's lid | `xarm/box-open-left`, `xarm/box-open-right` | box.py |
| close a drawer | `xarm/drawer-close-left`, `xarm/drawer-close-right` | drawer.py |

The paper's reach task (a goal reached from a random start) is `xarm/reach` of polytask.sim.xarm_suite, which
also defines the action rule, the 10-D state layout (`xarm_state`) and the last-step success verdict that all
of them share. "Left" and "right" are the robot's (+y is its left, the camera's side). Each module's docstring
states its success rule; docs/results-xarm.md has the table.
"""

from __future__ import annotations

from polytask.sim.registry import register
from polytask.sim.xarm_suite import xarm_factory
from polytask.sim.xarm_tasks import box, drawer, peg, pour

# (task class, its registered variants), in the paper's appendix order
FAMILIES = (
    (peg.PegTask, peg.VARIANTS),
    (pour.PourTask, pour.VARIANTS),
    (box.BoxTask, box.VARIANTS),
    (drawer.DrawerTask, drawer.VARIANTS),
)

for _cls, _variants in FAMILIES:
    for _d in _variants:
        register(f"xarm/{_d.name}", xarm_factory(_cls, _d), _d.language)
