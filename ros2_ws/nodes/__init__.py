"""Thin ROS 2 nodes: each `<name>_node.py` has `main()` and runs as `python -m polytask.nodes.<name>_node`.

A node parses its declared parameters, converts messages (polytask.ros), calls the library (polytask.sim,
polytask.learning, polytask.robot) and publishes on the topics of polytask.ros.topics.
"""
