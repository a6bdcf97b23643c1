"""The robot side without ROS: the command guard every arm command passes, and the arm backends.

`safety.CommandGuard` decides what (if anything) reaches the arm; `xarm_real.XArmReal` drives the real xArm
through xarm-python-sdk; `xarm_sim.XArmSim` is the same contract on the MuJoCo SimArm. The driver node
(polytask.nodes.xarm_driver_node) is a thin adapter between these and ROS topics/services.
"""
