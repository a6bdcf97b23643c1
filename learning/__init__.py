"""Agents, training loops, distillation, storage and checkpoints (torch; never imports ROS)."""
