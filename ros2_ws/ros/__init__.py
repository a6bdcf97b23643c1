"""Shared ROS 2 plumbing for every node: the topic/QoS table, Image <-> numpy, parameter and process helpers.

Nodes (polytask.nodes.*) import from here so that a topic name, its message type and its QoS are written down
once (`topics.py`) and every node and the README agree. `testing.py` starts real nodes as separate processes.
Importing this package does not import rclpy; the modules that need it import it themselves.
"""
