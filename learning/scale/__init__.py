"""Beyond one process: many expert-training jobs on a local pool or a Ray cluster (never imports ROS)."""
