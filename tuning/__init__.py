"""Keras Tuner searches for every app: python -m tuning <app> (tuning/search.py)."""
