"""The launch graphs of PolyTask, described once (`polytask.launch.graphs`).

Two front ends read the same description: the `launch/<name>.launch.py` files (for `ros2 launch polytask ...` on
ROS 2 machines, built from `launch_ros` actions) and `polytask launch <name>` (one process per node with
`--ros-args`, for machines without the `ros2` CLI). Nothing here imports ROS at module level.
"""
