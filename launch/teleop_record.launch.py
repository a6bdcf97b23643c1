"""`ros2 launch polytask teleop_record.launch.py [arg:=value ...]`: the graph described in polytask.launch.graphs.

`polytask launch teleop_record` starts the same nodes with the same parameters where the ros2 CLI is not installed.
"""

from polytask.launch.frontend import launch_description


def generate_launch_description():
    return launch_description("teleop_record")
