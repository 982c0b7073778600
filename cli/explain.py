"""python -m apps.<app> --explain INPUT: one input of the user's own, explained by an exported model.

The app reads the input and draws the explanation (its explain hook, e.g.
apps/image_pictures.py: explain_file); the methods are observation/explain.py's.
This prints the prediction and writes the picture where it never overwrites one.
"""
from __future__ import annotations

from pathlib import Path

import keras

from core.errors import UsageError
from observation.figures import save
from training.transfer import model_path


def explained_model(config, app) -> tuple[Path, keras.Model]:
    """The version --explain-model names (default: the newest under EXPORT_DIR/<served name>) and its Keras model.
    The served name is the app's (or, for an app whose models are named by the user, its served_name(config))."""
    if config.explain_model:
        source = config.explain_model
    else:
        name = app.served_name(config) if hasattr(app, "served_name") else app.NAME
        source = str(Path(config.export_dir) / name)
    if not Path(source).exists():
        raise UsageError(f"--explain: no exported model at {source}; train one first (python -m apps.{app.NAME}) or "
                         "name one with --explain-model PATH")
    try:
        path = model_path(source)
    except UsageError as err:
        raise UsageError(str(err).replace("--init-from", "--explain-model")) from None
    return path.parent, keras.saving.load_model(path, compile=False)


def explain_command(app, config) -> Path:
    """Explain config.explain (a file or a text) with the exported model; print the prediction, write the picture."""
    version, model = explained_model(config, app)
    explanation = app.explain(model, config.explain, version)
    out = Path(config.explain_to) if config.explain_to else _default_picture(config, app)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(explanation.figure, out)
    print(f"model:        {version}")
    print(f"prediction:   {explanation.prediction}")
    for line in explanation.lines:
        print(f"  {line}")
    print(f"explanation:  {out}  (open it in an image viewer or a browser)")
    return out


def _default_picture(config, app) -> Path:
    """LOGDIR/<app>/explanations/<input's name or 'text'>-<n>.png: never overwrites an earlier one."""
    try:
        stem = Path(config.explain).stem if Path(config.explain).is_file() else "text"
    except OSError:  # a text too long to be a file name
        stem = "text"
    folder = Path(config.logdir) / app.NAME / "explanations"
    n = 1
    while (folder / f"{stem}-{n}.png").exists():
        n += 1
    return folder / f"{stem}-{n}.png"
