"""Keras Tuner searches for every app: python -m tuning <app> (tuning/search.py)."""
import cli  # noqa: F401  (first: under python -m it filters TensorFlow's start-up chatter; cli/terminal.py)
