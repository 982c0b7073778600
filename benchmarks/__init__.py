"""Benchmarks: real training runs that print figures (not tests); benchmarks/harness.py runs the apps for them."""
from training import terminal

if terminal.started_as_program():  # python -m benchmarks.<name>: TensorFlow's start-up chatter filtered (training/terminal.py)
    terminal.quiet_native_logs()
