"""Keras Tuner searches for every app: python -m tuning <app> (tuning/search.py)."""
import cli  # noqa: F401  (first: under python -m it filters TensorFlow's start-up chatter; cli/terminal.py)
from tuning import state_files

state_files.install()  # a search killed while saving its state keeps the state it had (tuning/state_files.py)
