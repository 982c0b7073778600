"""The shared command line: defaults from the chosen model, refusals as UsageError."""
import pytest

from apps import mnist
from cli.parser import parse_config
from core.errors import UsageError


def test_defaults_come_from_the_chosen_model():
    config = parse_config(mnist, [])
    assert (config.model, config.epochs, config.batch_size) == ("cnn_bn", 10, 128)
    seed_cnn = parse_config(mnist, ["--model", "cnn"])
    assert (seed_cnn.epochs, seed_cnn.batch_size) == (10, 64)  # the article's S2 recipe


def test_smoke_shortens_the_run_but_keeps_explicit_values():
    assert parse_config(mnist, ["--smoke"]).epochs == 1
    assert parse_config(mnist, ["--smoke", "--epochs", "3"]).epochs == 3


@pytest.mark.parametrize("argv, words", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--model", "resnet9000"], "invalid choice"),
    (["--epochs", "0"], "must be positive"),
    (["--batch-size", "-8"], "must be positive"),
    (["--batch-size", "many"], "expected a positive int"),
    (["--strategy", "quantum"], "invalid choice"),
    (["--profile", "5,2"], "START <= STOP"),
    (["--run-id", "../escape"], "plain folder name"),
])
def test_bad_flags_are_one_line_usage_errors(argv, words):
    with pytest.raises(UsageError) as err:
        parse_config(mnist, argv)
    message = str(err.value)
    assert words in message and "\n" not in message


def test_identity_follows_what_changes_the_model_not_where_outputs_go():
    base = parse_config(mnist, ["--epochs", "2"])
    assert base.identity() == parse_config(mnist, ["--epochs", "2", "--logdir", "/elsewhere", "--fresh"]).identity()
    assert base.identity() != parse_config(mnist, ["--epochs", "3"]).identity()
    assert base.identity() != parse_config(mnist, ["--epochs", "2", "--seed", "7"]).identity()


def test_batch_norm_momentum_is_keras_default_only_for_smoke_length_runs():
    """apps/images.py: batch_norm_momentum: 0.99 below 30 steps, 0.9 from there."""
    from apps.images import batch_norm_momentum

    assert batch_norm_momentum(16) == batch_norm_momentum(29) == 0.99
    assert {batch_norm_momentum(steps) for steps in (30, 96, 156, 4290)} == {0.9}
