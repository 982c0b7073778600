"""Shared machinery every app runs on: config, strategy, the run function, TensorBoard, export."""
from training import terminal

if terminal.started_as_program():  # python -m training.export|rest: before TensorFlow loads (training/terminal.py)
    terminal.quiet_native_logs()
