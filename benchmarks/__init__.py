"""Benchmarks: real training runs that print figures (not tests); benchmarks/harness.py runs the apps for them."""
from cli import terminal

# python -m benchmarks.<name>: TensorFlow's start-up chatter filtered (cli/terminal.py)
if terminal.started_as_program():
    terminal.quiet_native_logs()
