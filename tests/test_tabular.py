"""apps.tabular: a user's own CSV through everything the suite does.

Real tables come from installed packages (benchmarks/tables.py: palmerpenguins'
penguins, vega_datasets' cars as the CSV a user has, with its missing values);
the edge cases (every column type, quoting, encodings, bad files) are small
files written here. The default tier reads, types and splits tables, refuses
every bad input, checks the phone recipe against the graph, and trains and
serves the messy cars once (shared by the serving and --explain tests); the
long tier kills and resumes, trains on two replicas, with --dp and from
--init-from.
"""
from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ONLY_TRAINING, backup_steps, cli, error_lines, in_process, kill_when, rows

from benchmarks import tables as real
from core.errors import UsageError
from pipelines import columns, splits, tables


def write(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def every_type(path: Path, rows_: int = 60) -> Path:
    """A table with one column of every type the rules know."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while it rains on the hill".split()
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["amount", "colour", "member", "bit", "note", "row", "code", "same", "day", "label"])
        for i in range(rows_):
            out.writerow([f"{rng.uniform(0, 100):.2f}", rng.choice(["red", "green", "blue"]), rng.choice(["yes", "no"]),
                          rng.choice(["0", "1"]), " ".join(rng.choice(words) for _ in range(6)), i + 1,
                          f"A{1000 + i * 7}", "x", f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}", rng.choice(["a", "b"])])
    return path


def test_every_column_type_is_inferred_and_flags_override_it(tmp_path, data_dir):
    table = tables.read(str(every_type(tmp_path / "types.csv")), data_dir)
    kinds = {name: kind.kind for name, kind in columns.infer(table, "label", columns.Overrides()).items()}
    assert kinds == {"amount": "number", "colour": "category", "member": "boolean", "bit": "boolean", "note": "text",
                     "row": "identifier", "code": "identifier", "same": "constant", "day": "date", "label": "category"}
    overrides = columns.Overrides(categorical=("row",), ignore=("amount",), numeric=("bit",))
    forced = columns.infer(table, "label", overrides)
    assert (forced["row"].kind, forced["amount"].kind, forced["bit"].kind) == ("category", "ignored", "number")
    with pytest.raises(UsageError, match="two of --numeric"):
        columns.infer(table, "label", columns.Overrides(categorical=("row",), ignore=("row",)))
    with pytest.raises(UsageError, match="none of its values is a number"):
        columns.infer(table, "label", columns.Overrides(numeric=("colour",)))


def test_the_task_follows_the_target(tmp_path, data_dir):
    table = tables.read(str(every_type(tmp_path / "types.csv")), data_dir)
    kinds = columns.infer(table, "label", columns.Overrides())

    def task(target, asked="auto"):
        return columns.infer_task(table, target, kinds[target], asked).task

    assert (task("amount"), task("label"), task("member"), task("bit")) == (
        "regression", "classification", "classification", "classification")
    cars = tables.read(str(real.cars_csv(tmp_path)), data_dir)
    cars_kinds = columns.infer(cars, "Miles_per_Gallon", columns.Overrides())
    assert columns.infer_task(cars, "Cylinders", cars_kinds["Cylinders"], "auto").task == "classification"  # 5 ints
    assert columns.infer_task(cars, "Cylinders", cars_kinds["Cylinders"], "regression").task == "regression"
    with pytest.raises(UsageError, match="holds words, not numbers"):
        task("label", "regression")
    with pytest.raises(UsageError, match="one value"):
        task("same")


def test_the_reader_takes_quotes_newlines_a_bom_other_delimiters_and_missing_words(tmp_path, data_dir):
    quoted = write(tmp_path / "quoted.csv", '\ufeffname,comment,n\n"Smith, J.","said ""hi""\nthen left",1\n'
                                            'Doe,NA,2\n"x",?,N/A\n')
    table = tables.read(str(quoted), data_dir)
    assert table.header == ["name", "comment", "n"] and table.rows == 3  # the byte-order mark is not in the name
    assert table.values("name") == ["Smith, J.", "Doe", "x"]
    assert table.values("comment") == ['said "hi"\nthen left']  # NA and ? are missing
    assert np.isnan(table.numbers("n")[2]) and list(table.codes("comment")) == [0, -1, -1]
    semicolons = tables.read(str(write(tmp_path / "s.csv", "a;b\n1,5;x\n2,5;y\n")), data_dir)
    assert semicolons.delimiter == ";" and semicolons.values("a") == ["1,5", "2,5"]
    tabs = tables.read(str(write(tmp_path / "t.tsv", "a\tb\n1\tx y\n2\tz\n")), data_dir)
    assert tabs.delimiter == "\t" and tabs.values("b") == ["x y", "z"]
    latin = tables.read(str(write(tmp_path / "l.csv", "a,b\n1,café\n2,thé\n", "latin-1")), data_dir,
                        tables.Options(encoding="latin-1"))
    assert latin.values("b") == ["café", "thé"]
    bad = write(tmp_path / "bad.csv", "a,b\n1,2\n3\n4,5\n6,7,8\n9,10\n")
    skipped = tables.read(str(bad), data_dir, tables.Options(skip_bad_rows=True))
    assert skipped.rows == 3 and skipped.bad_rows == 2 and [line for line, _ in skipped.first_bad] == [3, 5]
    assert bad.read_text() == "a,b\n1,2\n3\n4,5\n6,7,8\n9,10\n"  # the user's file is never written to


def test_the_split_is_stratified_seeded_and_keeps_a_class_in_training():
    groups = np.array([0] * 80 + [1] * 20 + [-1] * 5)
    first = splits.random_split(groups, 0.15, 0.15, seed=3)
    assert np.array_equal(first, splits.random_split(groups, 0.15, 0.15, seed=3))
    assert not np.array_equal(first, splits.random_split(groups, 0.15, 0.15, seed=4))
    assert list(first[-5:]) == [splits.LEFT_OUT] * 5
    for group, size in ((0, 80), (1, 20)):
        chosen = first[groups == group]
        assert (np.sum(chosen == splits.TEST), np.sum(chosen == splits.VALIDATION)) == (round(size * .15),) * 2
    tiny = splits.random_split(np.array([0, 0, 1, 1]), 0.4, 0.4, seed=0)
    assert np.sum(tiny[:2] == splits.TRAIN) >= 1 and np.sum(tiny[2:] == splits.TRAIN) >= 1
    assert list(splits.from_words(np.array(["Train", " test", "valid"], object), "s")) == [0, 2, 1]
    with pytest.raises(UsageError, match="may hold only train"):
        splits.from_words(np.array(["train", "later"], object), "s")


def test_validation_and_test_files_take_their_rows_in_any_column_order(tmp_path, data_dir):
    from apps import tabular, tabular_data
    from cli.parser import parse_config

    penguins = list(csv.reader(open(real.penguins())))
    header, body = penguins[0], penguins[1:]
    random.Random(0).shuffle(body)  # the file is sorted by species
    (tmp_path / "train.csv").write_text("\n".join(",".join(r) for r in [header, *body[:250]]) + "\n")
    (tmp_path / "val.csv").write_text("\n".join(",".join(r) for r in [header, *body[250:300]]) + "\n")
    order = list(reversed(range(len(header))))  # the test file's columns in another order
    (tmp_path / "test.csv").write_text("\n".join(",".join(r[i] for i in order) for r in [header, *body[300:]]) + "\n")

    def prepared(*flags):
        config = parse_config(tabular, ["--data", str(tmp_path / "train.csv"), "--target", "species",
                                        "--data-dir", str(data_dir), *flags])
        return tabular_data.prepare(config, say=lambda *_: None)

    both = prepared("--validation-data", str(tmp_path / "val.csv"), "--test-data", str(tmp_path / "test.csv"))
    assert both.counts == {"train": 250, "validation": 50, "test": len(body) - 300, "left_out": 0}
    reader = tabular_data.Reader(both.tables, both.inputs)
    test_rows = reader.read((2 << tabular_data.TABLE_SHIFT) + np.arange(3))  # the third table's first rows
    assert list(test_rows["island"]) == [r[header.index("island")].encode() for r in body[300:303]]
    assert list(test_rows["body_mass_g"]) == [float(r[header.index("body_mass_g")]) for r in body[300:303]]
    only_test = prepared("--test-data", str(tmp_path / "test.csv"))  # validation still comes from --data
    counts = only_test.counts  # 15 % of each class, rounded per class
    assert counts["test"] == len(body) - 300 and abs(counts["validation"] - 250 * .15) <= 2
    assert counts["train"] + counts["validation"] == 250
    (tmp_path / "short.csv").write_text("species,island\nAdelie,Dream\n")
    with pytest.raises(UsageError, match="--test-data short.csv has no column 'bill_length_mm'"):
        prepared("--test-data", str(tmp_path / "short.csv"))
    (tmp_path / "new.csv").write_text(",".join(header) + "\n" + ("Emperor," + ",".join(body[0][1:]) + "\n") * 2)
    with pytest.raises(UsageError, match="class 'Emperor' has no training rows"):
        prepared("--validation-data", str(tmp_path / "new.csv"))


def test_the_default_epochs_shrink_for_a_large_table_and_a_typed_value_wins(data_dir):
    from apps import tabular
    from cli.parser import parse_config

    def epochs(*flags):
        return parse_config(tabular, ["--data", str(real.penguins()), "--target", "species", "--data-dir",
                                      str(data_dir), *flags]).epochs

    assert epochs() == 100  # 240 training rows: 4 steps an epoch
    assert epochs("--batch-size", "1") == tabular.STEPS // 240  # as many epochs as fit in STEPS steps
    assert epochs("--batch-size", "1", "--epochs", "7") == 7 and epochs("--smoke") == 1


def test_column_names_become_unique_signature_keys():
    names = columns.serving_names(["x value", "b-c", "2nd", "ok_name", "OK name", "é", ""])
    assert names == {"x value": "x_value", "b-c": "b_c", "2nd": "column_2nd", "ok_name": "ok_name",
                     "OK name": "OK_name_2", "é": "column", "": "column_2"}


BAD = [  # (file text or None for no file, flags, words the one line must hold)
    (None, ["--target", "a"], "no such file"),
    ("", ["--target", "a"], "is empty"),
    ("a,b\n", ["--target", "a"], "no rows"),
    ("a,b\n1,x\n2,y\n", [], "--target: name the column"),
    ("a,b\n1,x\n2,y\n", ["--target", "zz"], "its columns are a, b"),
    ("a,b\n1,x\n2\n3,y\n", ["--target", "b"], "line 3 has 1 fields"),
    ("a,b\n1,x\n2,x\n3,x\n", ["--target", "b"], "one value ('x') in every row"),
    ("a,b\n1,x\n2,x\n3,y\n4,x\n", ["--target", "b"], "class 'y' has 1 row"),
    (b"a,b\n1,caf\xe9\n2,x\n", ["--target", "b"], "line 2 has the byte(s)"),
    ("a,b\n1,x\n2,y\n3,x\n4,y\n", ["--target", "b", "--split-fractions", "0.5,0.6"], "--split-fractions"),
    ("a,b,s\n1,x,train\n2,y,later\n3,x,test\n4,y,test\n", ["--target", "b", "--split-column", "s"],
     "may hold only train"),
    ("a,b\n1,x\n2,y\n", ["--target", "b", "--numeric", "nope"], "--numeric 'nope' is not a column"),
]


@pytest.mark.parametrize("text,flags,words", BAD, ids=[w for _, _, w in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, text, flags, words):
    from apps import tabular
    from cli.main import main

    path = tmp_path / "data.csv"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = path.read_bytes() if path.exists() else None
    code = main(tabular, ["--data", str(path), *flags, "--logdir", str(tmp_path / "runs"),
                          "--export-dir", str(tmp_path / "export")])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "export").exists()
    assert (path.read_bytes() if path.exists() else None) == before


def test_the_phone_recipe_computes_what_the_graph_does():
    """The first stage's layers (apps/tabular_layers.py) and deployment/phone_inputs.py on the same raw values:
    numbers with NaN, missing words, unseen and known categories, dates with and without a time, and not dates."""
    import tensorflow as tf

    from apps import tabular_layers as tl
    from deployment import phone_inputs

    days = np.array([b"2012-02-29", b"1969-12-31 23:59", b"2012/03/01", b"2012-13-01", b"31/01/2012",
                     b" 2000-01-01T06:30 "], object)
    colour = np.array([b"red", b" blue ", b"NA", b"mauve", b"", b"red"], object)
    amount = np.array([1.5, np.nan, -3.0, 0.0, 7.0, np.nan], np.float32)
    bit = np.array([0.0, 1.0, np.nan, 2.0, 1.0, 0.0], np.float32)
    raw = {"day": days, "colour": colour, "amount": amount, "bit": bit}
    tensors = {k: tf.constant(v) for k, v in raw.items()}
    got_days, got_cyclic = tl.DateParts(["day"])(tensors)
    ids = tl.CategoryIds([{"name": "colour", "vocabulary": ["red", "blue"], "numeric": False},
                          {"name": "bit", "vocabulary": [0.0, 1.0], "numeric": True}])(tensors)
    imputed, missing = tl.Impute([5.0, 100.0])(tf.stack([tensors["amount"], got_days[:, 0]], -1))
    spec = {"inputs": {
        "numbers": {"type": "columns", "columns": [{"from": "amount", "op": "number", "fill": 5.0},
                                                   {"from": "day", "op": "date_days", "fill": 100.0}]},
        "missing": {"type": "columns", "columns": [{"from": "amount", "op": "is_missing"},
                                                   {"from": "day", "op": "date_is_missing"}]},
        "cyclic": {"type": "columns", "columns": [{"from": "day", "op": "date_cyclic"}]},
        "categories": {"type": "category_ids", "columns": [
            {"from": "colour", "vocabulary": ["red", "blue"], "numeric": False},
            {"from": "bit", "vocabulary": [0.0, 1.0], "numeric": True}]}}}
    phone = phone_inputs.prepare(spec, raw)
    assert np.array_equal(phone["categories"], ids.numpy())
    assert ids.numpy().tolist() == [[1, 1], [2, 2], [3, 3], [0, 0], [3, 2], [1, 1]]  # 0 unseen, 3 missing
    assert np.array_equal(phone["numbers"], imputed.numpy()) and np.array_equal(phone["missing"], missing.numpy())
    assert imputed.numpy()[:, 1].tolist() == [15399.0, -1.0, 15400.0, 100.0, 100.0, 10957.0]  # days since 1970
    np.testing.assert_allclose(phone["cyclic"], got_cyclic.numpy(), atol=1e-6)


def test_baseline_shapley_values_add_up_to_the_change_from_the_reference():
    from observation.explain import baseline_shapley

    def f(batch):  # an interaction and a string input
        return batch["a"] * batch["b"] + (batch["c"] == b"y") * 3.0 + batch["d"]

    for n_extra in (0, 5):  # exact (4 inputs) and sampled orderings (9)
        example = {"a": np.array([2.0]), "b": np.array([3.0]), "c": np.array([b"y"], object), "d": np.array([1.0])}
        reference = {"a": np.array([0.0]), "b": np.array([1.0]), "c": np.array([b"n"], object), "d": np.array([0.0])}
        for i in range(n_extra):
            example[f"e{i}"], reference[f"e{i}"] = np.array([1.0]), np.array([1.0])
        values, base, top = baseline_shapley(lambda b: f(b), example, reference)
        assert np.isclose(values.sum(), top - base) and (base, top) == (0.0, 10.0)
        # a x b goes from 0 x 1 to 2 x 3: a alone makes it 2, b alone 0, both 6; a's value is (2 + 6) / 2
        assert np.allclose(values[:4], [4.0, 2.0, 3.0, 1.0])
        assert np.allclose(values[4:], 0.0)


# ---- The messy cars, trained once and served -----------------------------------

@pytest.fixture(scope="module")
def cars(tmp_path_factory):
    """vega_datasets' cars as a user's CSV (8 cars without mpg, 6 without horsepower), trained briefly with its
    LiteRT files and pictures: (folder, stdout)."""
    folder = tmp_path_factory.mktemp("cars")
    path = real.cars_csv(folder)
    out = in_process("tabular", "--data", str(path), "--target", "Miles_per_Gallon", "--epochs", "3",
                     "--logdir", str(folder / "runs"), "--export-dir", str(folder / "export"))
    return folder, out


def test_the_messy_cars_train_and_say_what_they_did(cars):
    folder, out = cars
    run_dir = next((folder / "runs" / "tabular").glob("ensemble-*"))
    assert "Horsepower        number          93     1.5%" in out and "Name              text" in out
    assert "target: regression (129 distinct numbers)" in out and "Year              date" in out
    assert "406 rows: 278 train / 60 validation / 60 test, 8 without a target left out" in out
    split = json.loads((run_dir / "split.json").read_text())
    assert split["counts"] == {"train": 278, "validation": 60, "test": 60, "left_out": 8}
    assignment = np.load(run_dir / "split.npy")
    assert len(assignment) == 406 and np.sum(assignment == splits.LEFT_OUT) == 8
    record = json.loads((run_dir / "columns.json").read_text())
    assert {c["column"]: c["type"] for c in record["columns"]}["Origin"] == "category"
    finished = json.loads((run_dir / "FINISHED.json").read_text())
    assert 0 < finished["test_mae"] < 8  # 3 epochs: far from the default's figure, but learning
    assert "Columns:      Name (text, string), Cylinders (number, float32)" in out
    assert '"Horsepower": ' in out and "python -m cli.rest" in out
    evaluation = json.loads((folder / "export" / "cars" / "1" / "evaluation.json").read_text())
    assert evaluation["litert"]["float32"]["kept"]  # the phone recipe + .tflite agree with the SavedModel


def test_the_cars_prediction_blends_the_ensemble_with_a_ridge_chosen_on_validation(cars):
    import keras

    folder, out = cars
    run_dir = next((folder / "runs" / "tabular").glob("ensemble-*"))
    line = next(line for line in out.splitlines() if line.startswith("ridge blend: "))
    found = re.search(r"on 278 training rows\) weighs ([\d.]+) .* over 60 rows: ensemble ([\d.]+), ridge ([\d.]+), "
                      r"blend ([\d.]+)", line)
    assert found, line
    weight, ensemble, ridge, blend = (float(v) for v in found.groups())
    assert blend <= min(ensemble, ridge)  # the weights tried include 0 (the ensemble) and 1 (the ridge)
    finished = json.loads((run_dir / "FINISHED.json").read_text())
    assert finished["details"]["ridge_blend_weight"] == weight
    model = keras.models.load_model(run_dir / "model.keras")
    assert float(model.get_layer("blend").weight.numpy()) == pytest.approx(weight)
    assert np.any(model.get_layer("ridge").kernel.numpy() != 0)  # solved, not its zero start


def test_the_served_cars_take_rows_and_columns_with_missing_and_unseen_values(cars):
    from deployment.rest import BadRequest, SessionModel

    folder, _ = cars
    model = SessionModel(folder / "export" / "cars" / "1")
    car = {"Name": "ford pinto", "Cylinders": 4, "Displacement": 98, "Horsepower": 75, "Weight_in_lbs": 2046,
           "Acceleration": 19, "Year": "1971-01-01", "Origin": "USA"}
    known = model.predict({"instances": [car]})["predictions"]
    odd = {**car, "Horsepower": float("nan"), "Origin": "Atlantis", "Name": "", "Year": "NA"}
    unusual = model.predict(json.dumps({"instances": [car, odd]}).replace("NaN", "NaN"))["predictions"]
    assert unusual[0] == known[0] and np.isfinite(unusual[1])  # missing and unseen: an answer, not an error
    columnar = model.predict({"inputs": {k: [v, odd[k]] for k, v in car.items()}})["outputs"]
    assert np.allclose(columnar["Miles_per_Gallon"], unusual)
    with pytest.raises(BadRequest, match="'Horsepower' is missing"):
        model.predict({"instances": [{k: v for k, v in car.items() if k != "Horsepower"}]})
    with pytest.raises(BadRequest, match="'Origin' takes strings"):
        model.predict({"instances": [{**car, "Origin": 3}]})


def test_explain_reads_rows_and_says_how_each_column_moved_them(cars, tmp_path, capsys):
    folder, _ = cars
    rows_csv = write(tmp_path / "two.csv", "Name,Cylinders,Displacement,Horsepower,Weight_in_lbs,Acceleration,Year,"
                                           "Origin,Miles_per_Gallon\nford pinto,4,98,,2046,19,1971-01-01,Mars,25\n"
                                           "amc hornet,6,232,100,2945,16,1973-01-01,USA,18\n")
    out = in_process("tabular", "--explain", str(rows_csv), "--name", "cars", "--export-dir", str(folder / "export"),
                     "--logdir", str(tmp_path / "runs"), "--explain-to", str(tmp_path / "why.png"))
    lines = out.splitlines()
    assert any(line.strip().startswith("row 1: ") and "(Horsepower)" in line for line in lines)
    assert (tmp_path / "why.png").stat().st_size > 10_000
    from apps import tabular
    from cli.main import main

    assert main(tabular, ["--explain", str(write(tmp_path / "no.csv", "Name,Cylinders\nx,4\n")), "--name", "cars",
                          "--export-dir", str(folder / "export")]) == 2
    assert "no column 'Displacement'; the model takes Name, Cylinders, Displacement" in capsys.readouterr().err


def test_tensorboard_holds_the_column_table_the_target_and_the_pictures(cars):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, _ = cars
    test_dir = next((folder / "runs" / "tabular").glob("ensemble-*")) / "test"
    events = EventAccumulator(str(test_dir), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tensors = set(events.Tags()["tensors"])  # TF2 summaries: images and text are tensors with their plugin's name
    pictures = {"data/target", "predicted_vs_true", "explanations/permutation_importance", "explanations/rows"}
    assert pictures <= tensors
    assert {events.SummaryMetadata(tag).plugin_data.plugin_name for tag in pictures} == {"images"}
    table = events.Tensors("data/columns")[0].tensor_proto.string_val[0].decode()
    assert "| Horsepower | Horsepower | number |" in table and "8 without a target left out" in table
    assert "sample_predictions/table" in tensors


# ---- Long: resume, two replicas, --dp, --init-from ------------------------------------

PENGUIN_FLAGS = ["--target", "species", "--batch-size", "32", *ONLY_TRAINING]  # 240 training rows: 8 steps


@pytest.mark.long
def test_a_killed_run_resumes_and_ends_bit_identical(tmp_path):
    args = ["apps.tabular", "--data", str(real.penguins()), *PENGUIN_FLAGS, "--epochs", "4", "--deterministic",
            "--smoke", "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "export")]
    run_dirs = lambda: list((tmp_path / "runs" / "tabular").glob("ensemble-*"))  # noqa: E731

    # just after an epoch boundary, then inside epoch 3
    kill_when(args, run_dirs, lambda d: 8 in backup_steps(d / "backup"), "the end of epoch 1")
    kill_when(args, run_dirs, lambda d: any(r["global_step"] >= 21 for r in rows(d)), "step 21")
    final = cli(*args)
    assert "resuming" in final.stdout
    reference = cli(*[a if a != str(tmp_path / "runs") else str(tmp_path / "reference") for a in args])
    ours = json.loads((run_dirs()[0] / "FINISHED.json").read_text())
    theirs = json.loads((next((tmp_path / "reference" / "tabular").glob("ensemble-*")) / "FINISHED.json").read_text())
    assert ours["weights_sha256"] == theirs["weights_sha256"]
    assert [line for line in reference.stdout.splitlines() if line.startswith("Test set:")][0] in final.stdout


@pytest.mark.long
def test_a_regression_killed_after_its_last_epoch_resumes_to_the_same_blend(tmp_path):
    args = ["apps.tabular", "--data", str(real.cars_csv(tmp_path)), "--target", "Miles_per_Gallon", "--batch-size",
            "32", *ONLY_TRAINING, "--epochs", "2", "--deterministic", "--smoke", "--logdir", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "export")]  # 278 training rows: 9 steps an epoch
    run_dirs = lambda: list((tmp_path / "runs" / "tabular").glob("ensemble-*"))  # noqa: E731

    # the last epoch's backup is written before the ridge is solved: the resumed run trains nothing and solves it
    kill_when(args, run_dirs, lambda d: 18 in backup_steps(d / "backup"), "the end of the last epoch")
    final = cli(*args)
    assert "resuming at the end of epoch 2" in final.stdout and "ridge blend: a ridge regression" in final.stdout
    reference = cli(*[a if a != str(tmp_path / "runs") else str(tmp_path / "reference") for a in args])
    ours = json.loads((run_dirs()[0] / "FINISHED.json").read_text())
    theirs = json.loads((next((tmp_path / "reference" / "tabular").glob("ensemble-*")) / "FINISHED.json").read_text())
    assert ours["weights_sha256"] == theirs["weights_sha256"]
    assert ours["details"]["ridge_blend_weight"] == theirs["details"]["ridge_blend_weight"]
    assert [line for line in reference.stdout.splitlines() if line.startswith("Test set:")][0] in final.stdout
    private = in_process("tabular", *args[1:-4], "--dp", "--logdir", str(tmp_path / "dp"), "--export-dir",
                         str(tmp_path / "export"))
    assert "ridge blend: left out under --dp" in private
    finished = json.loads((next((tmp_path / "dp" / "tabular").glob("ensemble-*")) / "FINISHED.json").read_text())
    assert finished["details"]["ridge_blend_weight"] == 0.0


@pytest.mark.long
def test_two_replicas_dp_and_init_from_train_the_penguins(tmp_path):
    common = ["--data", str(real.penguins()), *PENGUIN_FLAGS, "--smoke", "--export-dir", str(tmp_path / "export")]
    mirrored = cli("apps.tabular", *common, "--strategy", "mirrored", "--cpu-devices", "2", "--logdir",
                   str(tmp_path / "mirrored"))
    assert "over 2 replica(s) (MirroredStrategy)" in mirrored.stdout
    source = next((tmp_path / "mirrored" / "tabular").glob("ensemble-*")) / "model.keras"
    private = in_process("tabular", *common, "--dp", "--logdir", str(tmp_path / "dp"))
    assert "differential privacy: DP-SGD" in private and "epsilon:" in private
    loaded = in_process("tabular", *common, "--init-from", str(source), "--logdir", str(tmp_path / "init"))
    assert "loaded 16 layer(s): embeddings, member0_dense1" in loaded
