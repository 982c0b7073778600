"""What TensorBoard shows of a run: the suite's callbacks (callbacks.py), the HParams dashboard (hparams.py),
matplotlib pictures (figures.py) and the explanation methods (explain.py)."""
