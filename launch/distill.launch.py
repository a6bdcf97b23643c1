"""`ros2 launch polytask distill.launch.py [arg:=value ...]`: the graph described in polytask.launch.graphs.

`polytask launch distill` starts the same nodes with the same parameters where the ros2 CLI is not installed.
"""

from polytask.launch.frontend import launch_description


def generate_launch_description():
    return launch_description("distill")
