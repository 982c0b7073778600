"""Keras Tuner searches for every app: python -m tuning <app> (tuning/search.py)."""
import training  # noqa: F401  (first: under python -m it filters TensorFlow's start-up chatter; training/terminal.py)
