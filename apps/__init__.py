"""The apps: each a small declarative module run by training.run (python -m apps.<name>).

APPS is the one list of them, for tools that take an app by name (tuning, benchmarks).
"""
import cli  # noqa: F401  (first: under python -m it filters TensorFlow's start-up chatter; cli/terminal.py)

APPS = {"mnist": "apps.mnist", "fashion_mnist": "apps.fashion_mnist", "regression": "apps.regression",
        "sentiment": "apps.sentiment", "charlm": "apps.charlm", "tabular": "apps.tabular",
        "image_classifier": "apps.image_classifier", "text_classifier": "apps.text_classifier"}
