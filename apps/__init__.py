"""The apps: each a small declarative module run by training.run (python -m apps.<name>).

APPS is the one list of them, for tools that take an app by name (tuning, benchmarks).
"""
import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries the
# run's own output; warnings and errors still show. Set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

APPS = {"mnist": "apps.mnist", "fashion_mnist": "apps.fashion_mnist", "regression": "apps.regression",
        "sentiment": "apps.sentiment", "charlm": "apps.charlm"}
