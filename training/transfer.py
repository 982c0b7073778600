"""Starting a run from a trained model: --init-from, --freeze, --fine-tune-epochs.

--init-from PATH loads, into the freshly built model, the weights of every
layer that matches a layer of PATH's model by name and shape. Names match
as Keras numbers them within one model: the n-th `conv2d` of the one is the
n-th `conv2d` of the other, whatever suffix (`conv2d_7`) the process's layer
counter gave it. The model's output layer is the task's own: it is loaded
only from a model of the same app; from another app's model (MNIST's digit
3 is not Fashion-MNIST's dress) it starts new, like every unmatched layer.

--freeze keeps the loaded layers as they are for --epochs epochs (a frozen
BatchNormalization runs in inference mode, on the statistics it learned).
--fine-tune-epochs N then unfreezes them and trains everything N more
epochs at a tenth of the learning rate (or --fine-tune-learning-rate), with
a new optimizer of the model's own kind: the keras.io transfer-learning
guide's two phases. Batch norm layers stay frozen in the second phase too,
as that guide advises: unfrozen, their statistics would be relearned from a
small data set and undo what the source model learned.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import keras

from core.errors import UsageError
from training import keras_compat

MODEL_FILE = "model.keras"


def model_path(init_from: str) -> Path:
    """The model file --init-from names: a .keras file, a folder holding model.keras
    (a run folder or an exported version), or an app's export folder (its newest version)."""
    path = Path(init_from)
    if path.is_dir() and not (path / MODEL_FILE).exists():
        versions = sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True)
        if versions:
            path = path / str(versions[0])
    if path.is_dir():
        if (path / MODEL_FILE).exists():
            return path / MODEL_FILE
        hint = " (a SavedModel exported before exports carried model.keras: use its run folder)" \
            if (path / "saved_model.pb").exists() else ""
        raise UsageError(f"--init-from {init_from}: no {MODEL_FILE} in that folder{hint}")
    if not path.exists():
        raise UsageError(f"--init-from {init_from}: no such file or folder")
    return path


def source_file(config, name: str) -> Path | None:
    """A file written beside --init-from's model (its vocabulary, its run_config.json), if any."""
    if not config.init_from:
        return None
    path = model_path(config.init_from).parent / name
    return path if path.exists() else None


def weighted_layers(model) -> list:
    """Every layer that holds weights, nested models opened up, in the model's order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += weighted_layers(layer)
        elif layer.weights:
            found.append(layer)
    return found


def keyed(layers_: list) -> dict:
    """{(name without Keras' numbering, n-th such name): layer}."""
    counts, keys = {}, {}
    for layer in layers_:
        base = re.sub(r"_\d+$", "", layer.name)
        keys[(base, counts.get(base, 0))] = layer
        counts[base] = counts.get(base, 0) + 1
    return keys


class Transfer:
    """What --init-from loaded into a model, and the two phases --freeze and --fine-tune-epochs make of training."""

    def __init__(self, config):
        self.config = config
        self.loaded: list = []  # the target model's layers that took the source's weights

    def load(self, model) -> list[str]:
        """Loads the matching layers' weights into `model`; returns the lines that say what happened
        (none without --init-from). A source that is not a model, or with no matching layer, is refused."""
        config = self.config
        if not config.init_from:
            return []
        path = model_path(config.init_from)
        try:
            source = keras.saving.load_model(path, compile=False)
        except Exception as err:  # a zip that is not a model, a model of classes no app here defines
            raise UsageError(f"--init-from {path}: not a Keras model this app can read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:160]})") from None
        run_config = source_file(config, "run_config.json")
        source_app = json.loads(run_config.read_text()).get("app") if run_config else None
        theirs, ours = keyed(weighted_layers(source)), keyed(weighted_layers(model))
        head = weighted_layers(model)[-1]
        keep_head = source_app in (None, config.app)
        new, mismatched = [], []
        for key, layer in ours.items():
            other = theirs.get(key)
            if other is None or (layer is head and not keep_head):
                new.append(layer.name)
            elif [tuple(w.shape) for w in layer.weights] != [tuple(w.shape) for w in other.weights]:
                mismatched.append(f"{layer.name} {[tuple(w.shape) for w in other.weights][0]}"
                                  f"->{[tuple(w.shape) for w in layer.weights][0]}")
            else:
                layer.set_weights(other.get_weights())
                self.loaded.append(layer)
        if not self.loaded:
            raise UsageError(f"--init-from {path}: no layer of its model matches this model's by name and shape "
                             f"(theirs: {', '.join(layer.name for layer in theirs.values())}); start from a model of "
                             "the same family, or leave --init-from out")
        if config.freeze and len(self.loaded) == len(ours):
            raise UsageError(f"--freeze: every layer of the model was loaded from {path}, so nothing would train; "
                             "leave --freeze out to fine-tune it all")
        article = "an" if source_app[:1] in ("a", "e", "i", "o", "u") else "a"
        lines = [f"init-from {path}" + (f" ({article} {source_app} model)" if source_app else "") + ":",
                 f"  loaded {len(self.loaded)} layer(s): {', '.join(layer.name for layer in self.loaded)}",
                 f"  new {len(new)}: {', '.join(new) or '-'}"
                 + ("" if keep_head else f" (the output layer is {config.app}'s own, not {source_app}'s)"),
                 f"  skipped {len(mismatched)} for a shape mismatch: {', '.join(mismatched) or '-'}"]
        return lines

    # ---- The two phases.

    @property
    def epochs(self) -> int:
        return self.config.epochs + self.config.fine_tune_epochs

    def fine_tuning(self, epoch: int) -> bool:
        return self.config.fine_tune_epochs > 0 and epoch >= self.config.epochs

    def set_trainable(self, epoch: int) -> None:
        """Frozen phase: the loaded layers keep their weights. Fine-tuning: all but batch norm train."""
        if not self.config.freeze:
            return
        thaw = self.fine_tuning(epoch)
        for layer in self.loaded:
            layer.trainable = thaw and not isinstance(layer, keras.layers.BatchNormalization)

    def fine_tune_optimizer(self, optimizer):
        """A new optimizer of the model's own kind at the fine-tuning rate, constant."""
        rate = self.config.fine_tune_learning_rate or self.config.learning_rate / 10
        return type(optimizer).from_config({**optimizer.get_config(), "learning_rate": rate})

    def compile_kwargs(self, compile_kwargs: dict, epoch: int) -> dict:
        """What the model is compiled with for `epoch`: the builder's, or the fine-tuning optimizer."""
        if not self.fine_tuning(epoch):
            return compile_kwargs
        return {**compile_kwargs, "optimizer": self.fine_tune_optimizer(compile_kwargs["optimizer"])}

    def compile(self, model, compile_kwargs: dict, epoch: int, **options) -> None:
        """Compiles `model` (inside the strategy's scope) for the phase `epoch` is in."""
        self.set_trainable(epoch)
        model.compile(**self.compile_kwargs(compile_kwargs, epoch), **options)

    def switch_phase(self, model, strategy, compile_kwargs: dict, epoch: int, **options) -> bool:
        """At the first fine-tuning epoch: unfreeze and compile with the fine-tuning optimizer,
        which continues the step count (backups and schedules count global steps)."""
        if not (self.fine_tuning(epoch) and epoch == self.config.epochs):
            return False
        step = int(model.optimizer.iterations.numpy())
        with strategy.scope():
            self.compile(model, compile_kwargs, epoch, **options)
            model.optimizer.build(model.trainable_variables)
            model.optimizer.iterations.assign(step)
        keras_compat.build_again(model)
        return True
