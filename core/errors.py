"""UsageError: the one exception a user of the suite is meant to see.

A leaf module that imports nothing, so the data pipelines, the training
machinery, the apps and the tuner all raise the same error without importing
each other. The command line prints it as one line starting `error:` and
exits with code 2 (training/run.py: guarded).
"""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""
