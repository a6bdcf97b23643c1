"""What a run writes for people to read: run folders, CSV logs and TensorBoard, tables and plots, videos."""
