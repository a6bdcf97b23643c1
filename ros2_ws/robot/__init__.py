"""The robot side without ROS: the command guard every arm command passes, and the arm backends.

`safety.CommandGuard` decides what (if anything) reaches the arm; `xarm_real.XArmReal` drives the real xArm
through xarm-python-sdk; `xarm_sim.XArmSim` is the same contract on a registered `xarm/*` task (its MuJoCo
SimArm, objects and camera). `teleop.JoyMapping` turns joystick axes and buttons into arm actions (and back). The
driver and teleop recorder nodes (polytask.nodes) are thin adapters between these and ROS topics/services.
"""
