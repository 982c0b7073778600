"""The training loop and its resilience: the one run function (run.py), resume, backups, preemption,
strategies and precision, transfer learning and differential privacy."""
