"""The command line: the shared flags, the terminal, the closing report, and the suite's own commands.

    python -m apps.<app> [flags]                  every app (cli/main.py: main)
    python -m cli.rest MODEL REQUEST.json         TF Serving's REST answer, from the export as TF Serving loads it
    python -m cli.publish EXPORT_DIR/held/<model>/<name>    publish a version the gate held back

Importing this package first (apps/__init__.py, tuning/__init__.py, benchmarks/__init__.py
do) keeps TensorFlow's start-up chatter off the terminal (cli/terminal.py): nothing
here may import TensorFlow before that.
"""
from cli import terminal

if terminal.started_as_program():  # python -m <package>.<module>: before TensorFlow loads
    terminal.quiet_native_logs()
