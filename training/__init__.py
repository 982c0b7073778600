"""Shared machinery every app runs on: config, strategy, the run function, TensorBoard, export."""
