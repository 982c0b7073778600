"""Differentially private training: DP-SGD (Abadi et al. 2016) on any app with --dp.

One DP step (make_private installs it as the model's train_step, so fit(),
the callbacks, backups, resume, tuning and export work as in any run):
1. every example's gradient, vectorised over the batch (tf.vectorized_map of
   a one-example forward and backward pass: 8x a normal step for the MNIST
   DP model at batch 256, against 470x for tape.jacobian, whose convolution
   gradients fall back to a loop);
2. each clipped to L2 norm --dp-l2-clip over all weights together, and summed;
3. Gaussian noise of standard deviation noise multiplier x clip added ONCE to
   the global sum: on replica 0 only, before the optimizer sums the replicas'
   gradients. Noise on every replica would add its variance once per replica;
4. divided by the EXPECTED batch size (batches are Poisson samples,
   pipelines/input.py: PoissonBatches), then handed to the model's optimizer.

The noise is drawn from a key read from the operating system in each process
(never from --seed: whoever knows the seed could subtract the noise) and the
step number, so it differs between steps, replicas' copies are never summed,
and a resumed run does not repeat its noise.

The accounting is training/accounting.py's. What epsilon covers and what it
does not: docs/privacy.md.
"""
from __future__ import annotations

import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from core.errors import UsageError
from training import accounting
from training.accounting import Plan



class _Expected(logging.Filter):
    """Drops what says nothing a user can act on: vectorized_map falling back to a loop for the
    ops it cannot vectorise (the convolution filter gradient; an LSTM's whole gradient loop,
    which it reports as an ERROR with the graph's text before the step falls back to map_fn)."""

    def filter(self, record):
        return "parallel_for" not in record.pathname


logging.getLogger("tensorflow").addFilter(_Expected())

# ---- What DP-SGD cannot train.

def example_mixing_layers(model) -> list[str]:
    """Layers whose training-mode output for one example depends on the others in its batch:
    batch normalisation that trains (a frozen one runs on its stored statistics, per example)."""
    found = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer.name)
    return found


def check_model(model, model_name: str, app) -> None:
    mixing = example_mixing_layers(model)
    if mixing:
        ready = getattr(app, "DP_MODEL", None)
        raise UsageError(f"--dp: model {model_name!r} has batch normalisation ({', '.join(mixing[:3])}), which mixes "
                         "the examples of a batch, so no example's influence can be clipped; "
                         + (f"use --model {ready}, made for DP-SGD" if ready else "use a model without it"))


# ---- The DP train step.

CHUNK_FLOATS = 1 << 26  # per-example gradients held at once: 256 MB of float32


def private_train_step(model, plan: Plan):
    """A train_step for `model` that does DP-SGD as the module docstring says.

    The batch's per-example gradients are taken in chunks of at most
    CHUNK_FLOATS numbers, each chunk clipped and summed before the next: the
    sentiment bag model's 3.2 million weights make one example's gradient
    13 MB, so a whole batch of them at once would not fit. The MNIST DP
    model's batch is one chunk. The chunks change nothing but memory: every
    example is still clipped on its own.
    """
    from keras.src.losses.loss import unscale_loss_for_distribution  # what Keras' own train_step uses

    weights = model.trainable_variables
    # The tf.Variables under Keras' own: a zero gradient for a weight the loss does not reach (a bias
    # under an L2 penalty, an unused embedding) takes its dtype, which a Keras Variable gives as a string.
    sources = [w.value for w in weights]
    # One 62-bit key per weight, from the OS; a variable, so no graph written to TensorBoard holds it.
    key = tf.Variable(np.frombuffer(os.urandom(8 * len(weights)), np.int64) & (2**62 - 1), trainable=False,
                      name="dp_noise_key")
    noise_std, clip = plan.noise_multiplier * plan.clip, plan.clip
    chunk = max(1, CHUNK_FLOATS // sum(int(np.prod(w.shape)) for w in weights))

    def one_example(example):
        x, y = tf.nest.map_structure(lambda t: t[None], example)
        with tf.GradientTape() as tape:
            prediction = model(x, training=True)
            # The compiled loss alone (Keras divides it by the replica count; undone): weight
            # penalties are added after clipping and noise, below.
            loss = unscale_loss_for_distribution(model._compile_loss(y, prediction))
            scaled = model.optimizer.scale_loss(loss)  # float16's loss scale, if any
        grads = tape.gradient(scaled, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [tf.convert_to_tensor(g) for g in grads], loss, tf.nest.map_structure(lambda t: t[0], prediction)

    vectorized = tf.function(lambda x, y: tf.vectorized_map(one_example, (x, y)))
    # Splitting texts into words inside the model (a table's free-text column) traces under vectorized_map but
    # fails when run ("Incompatible shapes during merge": each example has its own number of words): a loop.
    splits_text = any(isinstance(layer, keras.layers.TextVectorization) and layer.get_config().get("split")
                      for layer in model._flatten_layers())
    how = {"vectorized": not splits_text}
    if splits_text:
        print("--dp: per-example gradients in a loop over the examples (slower): the model splits texts into words, "
              "which TensorFlow cannot vectorise", flush=True)

    def per_example_gradients(x, y):
        """vectorized_map where TensorFlow can vectorise the model's gradient, else a loop over the
        examples (an LSTM's: pfor cannot convert the gradient of its while loop); decided when traced.
        The attempt is a nested tf.function, so a failed one leaves nothing in the step's graph."""
        if how["vectorized"]:
            try:
                return vectorized(x, y)
            except (TypeError, ValueError, NotImplementedError) as err:
                how["vectorized"] = False
                print("--dp: per-example gradients in a loop over the examples (slower): TensorFlow cannot vectorise "
                      f"this model's gradient ({str(err).strip().splitlines()[-1][:120]})", flush=True)
        signature = ([tf.TensorSpec(w.shape, w.dtype) for w in weights], tf.TensorSpec([], tf.float32),
                     tf.nest.map_structure(lambda o: tf.TensorSpec(o.shape[1:], o.dtype), model.outputs[0]))
        return tf.map_fn(one_example, (x, y), fn_output_signature=signature)

    def clipped_sum(x, y, loss_scale):
        """The chunk's per-example gradients, each clipped to norm `clip`, summed; its metrics updated."""
        per_example, losses, predictions = per_example_gradients(x, y)
        per_example = [tf.cast(g, tf.float32) / loss_scale for g in per_example]
        count = tf.shape(losses)[0]
        norms = tf.sqrt(tf.add_n([tf.reduce_sum(tf.reshape(g, [count, -1]) ** 2, axis=1) for g in per_example]))
        factors = tf.minimum(1.0, clip / tf.maximum(norms, 1e-12))
        model._loss_tracker.update_state(tf.reduce_mean(losses), sample_weight=count)
        model.compute_metrics(x, y, predictions, sample_weight=None)
        return [tf.tensordot(factors, g, axes=1) for g in per_example]

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("--dp does not take sample weights")
        # Sparse inputs (the text bag's TF-IDF) made dense: the chunks and the examples below are slices
        # of the batch, which a tf.SparseTensor does not take; the layers compute the same on either.
        x = tf.nest.map_structure(lambda t: tf.sparse.to_dense(t) if isinstance(t, tf.SparseTensor) else t, x)
        count = tf.shape(tf.nest.flatten(y)[0])[0]  # this replica's share of a Poisson batch: any size, even 0
        loss_scale = model.optimizer.scale_loss(tf.constant(1.0))

        def more(start, sums):
            return start < count

        def next_chunk(start, sums):
            end = tf.minimum(start + chunk, count)
            part = tf.nest.map_structure(lambda t: t[start:end], (x, y))
            return end, [a + b for a, b in zip(sums, clipped_sum(*part, loss_scale))]

        _, sums = tf.while_loop(more, next_chunk, (tf.constant(0), [tf.zeros(w.shape, tf.float32) for w in weights]))
        first = tf.cast(tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0), tf.float32)
        step = tf.cast(model.optimizer.iterations, tf.int64)
        grads = []
        for i, summed in enumerate(sums):
            noise = tf.random.stateless_normal(summed.shape, seed=tf.stack([key[i], step])) * (noise_std * first)
            grads.append(tf.cast((summed + noise) / plan.expected_batch * loss_scale, weights[i].dtype))
        if model.losses:  # weight penalties (L2) depend on no example: their gradient needs no clipping or noise
            with tf.GradientTape() as tape:
                penalty = tf.add_n(model.losses)
            # each replica adds it; the optimizer sums them
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            penalties = tape.gradient(penalty, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = [g + tf.cast(p, g.dtype) / replicas for g, p in zip(grads, penalties)]
        model.optimizer.apply_gradients(zip(grads, weights))  # sums the replicas' gradients
        return model.get_metrics_result()

    return train_step


def make_private(model, plan: Plan) -> None:
    """Makes `model` (compiled, inside the strategy's scope) train with DP-SGD.

    The step replaces the instance's train_step, which Keras' fit() looks up when
    it builds its train function; the model's class, its saved file and its
    serving signature are unchanged.
    """
    model.train_step = private_train_step(model, plan)
    model.train_function = None  # a train function made before this would bypass it


def not_covered(app) -> list[str]:
    """What the app learns from its training data outside DP-SGD (app.DP_NOT_COVERED), and what no app's run covers."""
    return list(getattr(app, "DP_NOT_COVERED", ())) + ALWAYS_NOT_COVERED


ALWAYS_NOT_COVERED = [
    "the training loss and metrics in the logs and TensorBoard (computed on the private examples, without noise)",
    "validation metrics, and what is chosen by them (tuning, early stopping), when the validation split is private",
]


def record(plan: Plan, steps: int, app) -> dict:
    """privacy.json: the guarantee after `steps` steps, planned and spent, and what it does not cover."""
    return {**plan.record(steps), "epsilon_planned": round(plan.epsilon(plan.steps_per_epoch * plan.epochs), 4),
            "not_covered": not_covered(app)}


class Privacy:
    """--dp as the run function sees it (training/run.py): one object, which does nothing without --dp.

    for_run plans the noise (training/accounting.py); check refuses a model DP-SGD cannot train;
    make_private installs the DP step; callbacks report the epsilon spent per epoch; files and
    details carry the guarantee the trained weights have into the run folder and the export.
    """

    def __init__(self, app, plan: Plan | None, model_name: str = ""):
        self.app, self.plan, self.model_name = app, plan, model_name

    @classmethod
    def for_run(cls, app, config, data) -> Privacy:
        """data: training/run.py's Data (the batches give the data size and the steps the noise is planned for)."""
        if not config.dp:
            return cls(app, None)
        return cls(app, accounting.plan(config, data.train.examples, data.train.steps_per_epoch), config.model)

    def check(self, model) -> None:
        """Refuses a model DP-SGD cannot train (batch norm that trains), before the run writes anything."""
        if self.plan:
            check_model(model, self.model_name, self.app)

    def lines(self) -> list[str]:
        """What the run prints about its privacy before training."""
        if not self.plan:
            return []
        return [self.plan.describe(), *(f"  not covered by epsilon: {leak}" for leak in not_covered(self.app))]

    def make_private(self, model) -> None:
        if self.plan:
            make_private(model, self.plan)

    def callbacks(self, logdir: str) -> list:
        return [Spent(logdir, self.plan)] if self.plan else []

    def hparams(self) -> dict:
        """What the HParams dashboard shows of the resolved plan: the calibrated noise, the epsilon of every step."""
        if not self.plan:
            return {}
        return {"dp_noise_multiplier": self.plan.noise_multiplier,
                "dp_epsilon": round(self.plan.epsilon(self.plan.steps_per_epoch * self.plan.epochs), 4)}

    def files(self, model) -> dict:
        """privacy.json, beside the trained model in the run folder and in the export."""
        if not self.plan:
            return {}
        spent = record(self.plan, int(model.optimizer.iterations.numpy()), self.app)
        return {"privacy.json": json.dumps(spent, indent=2)}

    def details(self, model) -> dict:
        """The closing report's numbers (TensorBoard and HParams too), and one line that says what they rest on."""
        if not self.plan:
            return {}
        spent = record(self.plan, int(model.optimizer.iterations.numpy()), self.app)
        other = "rdp" if spent["accountant"] == "pld" else "pld"
        return {"epsilon": spent["epsilon"], "delta": spent["delta"], "privacy": (
            f"DP-SGD, {spent['accountant'].upper()} accountant ({other.upper()}: epsilon "
            f"{spent[f'epsilon_{other}']:.4g}), noise multiplier {spent['noise_multiplier']:.4g}, clip "
            f"{spent['l2_clip']:g}, {spent['steps']} Poisson-sampled steps; what epsilon does not cover: privacy.json")}


class Spent(keras.callbacks.Callback):
    """TensorBoard's epoch_epsilon: the epsilon spent by the end of each epoch (a resumed run counts every step)."""

    def __init__(self, logdir: str, plan: Plan):
        super().__init__()
        self.logdir, self.plan = logdir, plan

    def on_epoch_end(self, epoch, logs=None):
        from observation.callbacks import write_scalars

        spent = self.plan.epsilon(int(self.model.optimizer.iterations.numpy()))
        write_scalars(self.logdir, {"epoch_epsilon": spent}, step=epoch)
        if logs is not None:
            logs["epsilon"] = spent  # the progress bar and the step log show it too
