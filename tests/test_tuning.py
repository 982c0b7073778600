"""python -m tuning: real searches on the smoke slice of real Auto MPG, for every tuner,
killed and resumed; a chief with two workers on 127.0.0.1; the HParams data read
back from the event files; bad input refused with one line and nothing lost."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from apps import charlm, fashion_mnist, mnist, regression, sentiment
from conftest import ROOT
from cli.parser import build_parser
from core.config import model_defaults, space_defaults
from cli.parser import parse_config
from core.errors import UsageError
from tuning.parallel import free_port
from tuning.trials import SMOOTHING, trailing_mean

SEARCH = ["regression", "--smoke", "--data-source", "mirror", "--epochs", "2"]


def tuning(tmp_path, *extra, **popen):
    argv = [sys.executable, "-m", "tuning", *SEARCH, "--logdir", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "sm"), *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def trial_rows(search_dir: Path) -> list[dict]:
    path = search_dir / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def hparams_of_run(run_dir: Path) -> tuple[dict, list[float]]:
    """(hyperparameters, best-objective values per epoch) as TensorBoard's HParams plugin reads them."""
    values, best = {}, []
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for v in event.summary.value:
                if v.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    for name, value in data.session_start_info.hparams.items():
                        values[name] = value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
                elif v.tag == "best_val_mae":
                    best.append(float(tf.make_ndarray(v.tensor)))
    return values, best


def validation_curve(run_dir: Path, tag: str = "epoch_mae") -> list[float]:
    """A run's validation curve as TensorBoard reads it (run_dir/validation)."""
    values = []
    for events in sorted((run_dir / "validation").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            values += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value if v.tag == tag]
    return values


def completed_trials(search_dir: Path) -> list[str]:
    """Trials the oracle has recorded as COMPLETED (Keras Tuner's trial_<id>/trial.json)."""
    out = []
    for path in search_dir.glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
        except ValueError:  # caught half written
            continue
        if trial["status"] == "COMPLETED":
            out.append(trial["trial_id"])
    return sorted(out)


def processes_under(path: Path) -> list[int]:
    """Live processes whose command line names `path` (the search's workers carry its --logdir)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path) in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def workers_of(pid: int) -> list[int]:
    """The chief's worker processes, not the short-lived children its libraries
    fork now and then (they carry the chief's own command line until they exec).
    A worker's environment, fixed at its exec, names it."""
    out = []
    for child in children_of(pid):
        try:
            if b"\0KERASTUNER_TUNER_ID=worker" in b"\0" + Path(f"/proc/{child}/environ").read_bytes():
                out.append(child)
        except OSError:
            continue
    return out


def hparams_columns(search_dir: Path) -> tuple[list[str], list[str]]:
    """The HParams dashboard's declared columns: (hyperparameter names, metric tags)."""
    for events in search_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for v in event.summary.value:
                if v.tag == "_hparams_/experiment":
                    info = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content).experiment
                    return sorted(h.name for h in info.hparam_infos), sorted(m.name.tag for m in info.metric_infos)
    return [], []


@pytest.mark.long
@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])  # random's oracle: tests/test_tuning.py's others
def test_search_killed_after_a_trial_resumes_without_repeating_it(tmp_path, tuner):
    search_dir = tmp_path / "runs" / "tuning" / "regression" / f"ensemble-{tuner}-1"
    extra = ["--max-trials", "2"] + ([] if tuner == "hyperband" else ["--no-retrain"])
    extra += ["--folds", "2"] if tuner == "bayesian" else []  # cross-validated trials, read back the same way
    proc = tuning(tmp_path, "--tuner", tuner, *extra)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not completed_trials(search_dir):
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before it could be killed:\n" + proc.stdout.read()
    os.kill(proc.pid, signal.SIGKILL)  # a real kill, mid-search: trial 0 recorded, trial 1 under way
    proc.wait()
    first = trial_rows(search_dir)
    assert completed_trials(search_dir) == ["0"] and [r["trial"] for r in first][:1] == ["0"]
    deadline = time.time() + 30
    while processes_under(tmp_path) and time.time() < deadline:
        time.sleep(0.2)
    assert not processes_under(tmp_path), "a worker outlived its killed chief"

    out, _ = tuning(tmp_path, "--tuner", tuner, *extra).communicate(timeout=300)
    assert "(resuming)" in out, out
    assert completed_trials(search_dir) == ["0", "1"], out
    rows = trial_rows(search_dir)
    assert [r for r in rows if r["trial"] == "0"] == [first[0]], out  # the recorded trial was not run again
    rows = [r for r in rows if r["trial"] != "1"] + [r for r in rows if r["trial"] == "1"][-1:]  # 1 may have run twice
    assert rows[0]["hparams"] == space_defaults(regression.ensemble_space)  # trial 0 is the untuned default
    assert len({r["pid"] for r in rows}) == 2  # each trial in its own process
    oracle = json.loads((search_dir / "oracle.json").read_text())
    assert len(oracle["end_order"]) == 2

    # HParams: every trial's values and its best (not last) objective, read back from its own run.
    best = json.loads((search_dir / "best_hparams.json").read_text())
    scores = {}
    for row in rows:
        values, best_per_epoch = hparams_of_run(search_dir / row["trial"] / "execution0")
        for name, value in row["hparams"].items():
            assert values[name] == pytest.approx(value), name
        assert best_per_epoch == sorted(best_per_epoch, reverse=True)  # a running minimum
        # cross-validated: the score is the folds' mean curve's trailing mean, not its best epoch
        if tuner == "bayesian":
            curve = validation_curve(search_dir / row["trial"] / "execution0")
            smoothed = trailing_mean(curve, SMOOTHING)
            assert len(curve) == 2 and best_per_epoch == pytest.approx([min(smoothed[:e + 1]) for e in range(2)])
        scores[row["trial"]] = best_per_epoch[-1]
    assert best["val_mae"] == pytest.approx(min(scores.values()), rel=1e-5)
    assert best["hparams"] == next(r["hparams"] for r in rows if r["trial"] == best["trial_id"])
    if tuner == "hyperband":  # the best retrained on train + validation and exported as version 1
        assert (tmp_path / "sm" / "regression" / "1" / "saved_model.pb").exists(), out
        evaluation = json.loads((tmp_path / "sm" / "regression" / "1" / "evaluation.json").read_text())
        # the apps' own checks
        assert evaluation["metric"] == ["mae", "mpg"] and evaluation["litert"]["float32"]["kept"]
        final_run = tmp_path / "runs" / "regression" / f"tuned-{search_dir.name}"
        final = json.loads((final_run / "run_config.json").read_text())
        assert final["include_validation"] and final["epochs"] == best["epochs"]
        assert {k: final["hparams"][k] for k in final["hparams"]} == {k: best["hparams"][k] for k in final["hparams"]}
        assert (search_dir / "FINISHED.json").exists()
        # Killed after the final fit, before the search was marked finished: the rerun neither trains nor exports again.
        (search_dir / "FINISHED.json").unlink()
        again, _ = tuning(tmp_path, "--tuner", tuner, *extra).communicate(timeout=300)
        assert "retraining" not in again and (search_dir / "FINISHED.json").exists(), again
        assert sorted(p.name for p in (tmp_path / "sm" / "regression").iterdir()) == ["1"]
    # The dashboard's columns, declared at the search's root: every hyperparameter and the metrics.
    columns, metrics = hparams_columns(search_dir)
    assert columns == sorted([*space_defaults(regression.ensemble_space), "tuner/epochs"])
    assert metrics == ["best_val_mae", "epoch_loss", "epoch_mae"]


@pytest.mark.long
def test_chief_and_two_workers_share_one_search(tmp_path):
    out, _ = tuning(tmp_path, "--tuner", "random", "--max-trials", "4", "--workers", "2",
                    "--no-retrain").communicate(timeout=500)
    search_dir = tmp_path / "runs" / "tuning" / "regression" / "ensemble-random-1"
    rows = trial_rows(search_dir)
    assert sorted(r["trial"] for r in rows) == ["0", "1", "2", "3"], out  # each trial once
    assert {r["tuner"] for r in rows} == {"worker0", "worker1"}, rows  # both workers trained trials
    assert len({r["pid"] for r in rows}) == 4  # a fresh process for every trial gives the memory back
    assert "[worker0] " in out and "[worker1] " in out  # their epochs show on the chief's console
    assert "4 trial(s): 4 completed" in out, out


@pytest.mark.long
def test_a_worker_started_by_hand_joins_the_search_as_from_another_machine(tmp_path):
    """tuning/parallel.py's recipe for a search across machines, on 127.0.0.1:
    the chief listens where KERASTUNER_ORACLE_IP and _PORT say (all interfaces
    here), a worker started by hand with its own id joins by --search-id, and
    the chief ends only when that worker's trials have ended too."""
    port = str(free_port())
    argv = ["--tuner", "random", "--max-trials", "4", "--no-retrain", "--search-id", "shared"]
    oracle = {"KERASTUNER_ORACLE_PORT": port}
    chief = tuning(tmp_path, *argv, env={**os.environ, **oracle, "KERASTUNER_TUNER_ID": "chief",
                                         "KERASTUNER_ORACLE_IP": "0.0.0.0"})
    by_hand = tuning(tmp_path, *argv, env={**os.environ, **oracle, "KERASTUNER_TUNER_ID": "tuner-b",
                                           "KERASTUNER_ORACLE_IP": "127.0.0.1"})
    out, _ = chief.communicate(timeout=500)
    other, _ = by_hand.communicate(timeout=120)
    assert chief.returncode == 0 and by_hand.returncode == 0, out + other
    assert f"chief: oracle on 0.0.0.0:{port}" in out, out
    rows = trial_rows(tmp_path / "runs" / "tuning" / "regression" / "shared")
    assert sorted(r["trial"] for r in rows) == ["0", "1", "2", "3"], out + other  # each trial once
    assert {r["tuner"] for r in rows} == {"worker0", "tuner-b"}, rows
    assert "4 trial(s): 4 completed" in out, out

@pytest.mark.long
def test_a_trial_whose_process_is_killed_fails_and_the_search_goes_on(tmp_path):
    """As when the kernel's out-of-memory killer ends a trial: the trial is
    recorded FAILED with the cause, a new worker takes the next trial."""
    proc = tuning(tmp_path, "--tuner", "random", "--max-trials", "2", "--epochs", "300", "--no-retrain")
    search_dir = tmp_path / "runs" / "tuning" / "regression" / "ensemble-random-1"
    deadline = time.time() + 120
    while time.time() < deadline and not (search_dir / "trial_0" / "trial.json").exists():
        time.sleep(0.1)
    time.sleep(2)
    workers = workers_of(proc.pid)
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "trial 0 failed: its process was killed by SIGKILL" in out, out
    assert "2 trial(s): 1 completed, 1 failed" in out, out
    assert completed_trials(search_dir) == ["1"]


@pytest.mark.long
def test_workers_that_keep_dying_end_the_search_with_one_line_and_it_resumes(tmp_path):
    """A setup that kills every worker (here: this test, four times in a row) is
    not a bad trial: the chief stops restarting them, says so in one line,
    exits 2, and the search folder is kept, so the same command resumes it."""
    proc = tuning(tmp_path, "--tuner", "random", "--max-trials", "1", "--no-retrain")
    killed, deadline = set(), time.time() + 180
    while len(killed) < 4 and time.time() < deadline and proc.poll() is None:
        for pid in set(workers_of(proc.pid)) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=120)
    assert len(killed) == 4, out
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "worker0 stopped: its process was killed by SIGKILL" in errors[0], out
    assert "rerun the same command to resume the search" in errors[0], out
    assert not processes_under(tmp_path), "a worker outlived the stopped search"
    search_dir = tmp_path / "runs" / "tuning" / "regression" / "ensemble-random-1"
    assert (search_dir / "search.json").exists()
    again = tuning(tmp_path, "--tuner", "random", "--max-trials", "1", "--no-retrain")
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "(resuming)" in out, out
    assert "1 trial(s): 1 completed" in out, out


@pytest.mark.long
def test_time_budget_ends_the_search_cleanly(tmp_path):
    out, _ = tuning(tmp_path, "--tuner", "random", "--max-trials", "10", "--time-budget", "0.01",
                    "--no-retrain").communicate(timeout=300)
    assert "time budget of 0.01 min spent" in out, out
    assert "1 trial(s): 1 completed" in out, out


def test_nan_trial_is_recorded_failed_and_the_search_goes_on(tmp_path, monkeypatch, capsys):
    from tuning.search import main

    def nan_space(hp):  # two trials: a sane rate and one that turns the loss into NaN
        hp.Choice("learning_rate", [1e-3, 1e30])
        hp.Fixed("members", 1), hp.Fixed("hidden_layers", 1), hp.Fixed("units", 8), hp.Fixed("dropout", 0.0)
        hp.Fixed("l2", 0.0), hp.Fixed("loss", "mse"), hp.Fixed("optimizer", "adam"), hp.Fixed("schedule", "constant")
        hp.Fixed("batch_size", 32)

    monkeypatch.setitem(regression.MODELS, "ensemble", regression.MODELS["ensemble"]._replace(space=nan_space))
    code = main([*SEARCH, "--tuner", "random", "--max-trials", "2", "--no-retrain", "--workers", "0",
                 "--logdir", str(tmp_path / "runs")])  # in this process, where the space is patched
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 trial(s): 1 completed, 1 failed" in out
    assert "failed: trial" in out and "loss became" in out


def test_language_model_search_minimises_its_validation_loss(tmp_path, capsys):
    """The language model is tuned by validation loss (log perplexity), lower is better,
    through the same trials, HParams columns and best_hparams.json."""
    from tuning.search import main

    argv = ["charlm", "--smoke", "--data-source", "mirror", "--tuner", "random", "--max-trials", "2",
            "--workers", "0", "--no-retrain", "--logdir", str(tmp_path / "runs")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "random search of model lstm for the best val_loss" in out, out
    assert "train it yourself: python -m apps.charlm --smoke" in out, out
    search_dir = tmp_path / "runs" / "tuning" / "charlm" / "lstm-random-1"
    scores = [json.loads(p.read_text())["score"] for p in search_dir.glob("trial_*/trial.json")]
    best = json.loads((search_dir / "best_hparams.json").read_text())
    assert len(scores) == 2 and best["val_loss"] == pytest.approx(min(scores))
    assert set(best["hparams"]) == set(space_defaults(charlm.lstm_space))
    assert hparams_columns(search_dir)[1][0] == "best_val_loss"

@pytest.mark.parametrize("argv, message", [
    (["speech"], "unknown app 'speech'"),
    (["regression", "--tuner", "grid"], "argument --tuner: invalid choice"),
    (["regression", "--time-budget", "0"], "argument --time-budget: must be positive"),
    (["regression", "--max-trials", "-2"], "argument --max-trials: must be positive"),
    (["regression", "--workers", "-1"], "--workers must be 0 or more"),
    (["regression", "--model", "linear"], "model 'linear' of regression has no search space"),
])
def test_bad_input_gets_one_line(argv, message, capsys):
    from tuning.search import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_unwritable_logdir_and_changed_space_are_refused_without_touching_anything(tmp_path, capsys, monkeypatch):
    from tuning.search import main

    blocked = tmp_path / "a-file"  # not a folder: nothing can be written under it, even as root
    blocked.write_text("keep me")
    assert main([*SEARCH, "--logdir", str(blocked / "runs")]) == 2
    assert "--logdir" in capsys.readouterr().err and blocked.read_text() == "keep me"

    argv = [*SEARCH, "--tuner", "random", "--max-trials", "1", "--no-retrain", "--workers", "0",
            "--logdir", str(tmp_path / "runs")]
    assert main(argv) == 0
    search_dir = tmp_path / "runs" / "tuning" / "regression" / "ensemble-random-1"
    (search_dir / "FINISHED.json").unlink()  # as if killed before the end
    before = {p: p.read_bytes() for p in search_dir.rglob("*") if p.is_file()}
    wider = lambda hp: (regression.ensemble_space(hp), hp.Choice("units_extra", [1, 2]))  # noqa: E731
    monkeypatch.setitem(regression.MODELS, "ensemble", regression.MODELS["ensemble"]._replace(space=wider))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "was started with a different search space" in err and "--fresh" in err, err
    assert before == {p: p.read_bytes() for p in search_dir.rglob("*") if p.is_file()}
    assert main([*argv, "--fresh"]) == 0  # --fresh starts a new search beside it
    assert (search_dir.parent / "ensemble-random-2" / "best_hparams.json").exists()


def test_a_cross_validated_score_is_not_its_luckiest_epoch():
    """One lucky epoch (1.0 amid 3s) must not outscore a curve that settles at 2."""
    jittery, settled = [4, 3, 3, 3, 3, 1, 3, 3], [4, 3, 2, 2, 2, 2, 2, 2]
    assert min(trailing_mean(jittery, 5)) == pytest.approx(2.6)
    assert min(trailing_mean(settled, 5)) == pytest.approx(2.0)  # better: it wins the search
    assert trailing_mean([4, 2, 3], 2) == [4, 3, 2.5]  # the first epochs average what there is
    assert trailing_mean(settled, 1) == settled


ALL_MODELS = [(app, name) for app in (mnist, fashion_mnist, regression, sentiment, charlm) for name in app.MODELS]


@pytest.mark.parametrize("app, model", ALL_MODELS, ids=[f"{a.NAME}-{m}" for a, m in ALL_MODELS])
def test_every_default_has_one_home(app, model):
    """A model's untuned values live in its search space, or (batch size and
    learning rate of a model without one in its space) on its ModelSpec, never
    both; a flag a space sets has no default of its own on the command line;
    and parse_config gives the model exactly those values."""
    spec = app.MODELS[model]
    defaults = model_defaults(spec)  # raises for a value with two homes or none
    config = parse_config(app, ["--model", model])
    parser_defaults = vars(build_parser(app).parse_args([]))
    for name, value in defaults.items():
        if name in parser_defaults:
            assert parser_defaults[name] is None, f"--{name} has a default beside the space's"
        actual = getattr(config, name) if hasattr(config, name) else config.options.get(name, config.hparams.get(name))
        assert actual == value, name


def test_the_builder_takes_the_learning_rate_from_the_config():
    config = parse_config(regression, [])
    splits = regression.load_data(parse_config(regression, ["--smoke", "--data-source", "mirror"]))
    model, compile_kwargs = regression.MODELS[config.model].build(config, splits, 8)
    default_rate = space_defaults(regression.ensemble_space)["learning_rate"]
    assert float(compile_kwargs["optimizer"].learning_rate) == pytest.approx(default_rate)
    assert len(model.get_layer("members").layers) == 1 + 10 * 3 + 1  # input, 10 x (2 dense + output), average
    two_homes = regression.MODELS["ensemble"]._replace(learning_rate=0.5)
    with pytest.raises(ValueError, match="exactly one home"):
        model_defaults(two_homes)
    with pytest.raises(ValueError, match="exactly one home"):
        model_defaults(regression.MODELS["mlp"]._replace(learning_rate=None))


def test_hparams_file_sets_the_model_and_bad_files_are_refused(tmp_path):
    good = tmp_path / "best.json"
    good.write_text(json.dumps({"hparams": {"members": 3, "batch_size": 64, "learning_rate": 0.01}, "epochs": 7}))
    config = parse_config(regression, ["--hparams", str(good)])
    assert (config.hparams["members"], config.batch_size, config.learning_rate) == (3, 64, 0.01)
    assert parse_config(regression, ["--hparams", str(good), "--batch-size", "16"]).batch_size == 16  # the flag wins
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"widht": 3}))
    with pytest.raises(UsageError, match="does not take: \\['widht'\\]"):
        parse_config(regression, ["--hparams", str(bad)])
    with pytest.raises(UsageError, match="has no search space"):
        parse_config(regression, ["--model", "mlp", "--hparams", str(good)])


@pytest.mark.long
def test_search_runs_its_trials_under_the_apps_strategy(tmp_path):
    """The strategy the app resolves is the tuner's: a 2-replica MirroredStrategy over two logical CPUs.
    In a fresh process, as users run it: in this test process, after other
    searches, the second model's collective all-reduce failed."""
    out, _ = tuning(tmp_path, "--strategy", "mirrored", "--cpu-devices", "2", "--tuner", "random", "--max-trials", "1",
                    "--no-retrain").communicate(timeout=300)
    assert "2 replica(s) (MirroredStrategy)" in out and "1 trial(s): 1 completed" in out, out


def test_bad_input_found_by_a_worker_is_one_line_at_once(tmp_path, capsys):
    """The chief leaves the devices to its workers, so a worker finds that this
    machine has no TPU: its usage error ends the search with one line, no retries."""
    from tuning.search import main

    assert main([*SEARCH, "--strategy", "tpu", "--max-trials", "1", "--no-retrain", "--logdir",
                 str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --strategy tpu: no TPU found") and "(worker0;" in err[0], err
    log = (tmp_path / "runs" / "tuning" / "regression" / "ensemble-hyperband-1" / "worker0.log").read_text()
    assert log.count("error: --strategy tpu") == 1  # one worker, not a string of restarts


@pytest.mark.parametrize("address, words", [
    ("taken", "cannot listen there (Address already in use)"),
    ("999.1.2.3:8000", "'999.1.2.3' is not an address of this machine"),
    ("127.0.0.1:99999", "the port must be a number from 1 to 65535"),
    ("127.0.0.1:eighty", "the port must be a number from 1 to 65535"),
])
def test_a_chief_that_cannot_listen_where_it_is_told_says_so_and_starts_no_worker(tmp_path, capsys, monkeypatch,
                                                                                  address, words):
    import socket

    from tuning.search import main

    with socket.socket() as holder:  # a port some other program listens on
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        ip, port = ("127.0.0.1", str(holder.getsockname()[1])) if address == "taken" else address.split(":")
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", ip)
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", port)
        # Before the fix the chief waited forever for workers waiting for it: fail instead of hanging CI.
        signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the chief did not return within 60 s"))
        signal.alarm(60)
        try:
            code = main([*SEARCH, "--max-trials", "1", "--logdir", str(tmp_path / "runs")])
        finally:
            signal.alarm(0)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: KERASTUNER_ORACLE_IP={ip} "
                                               f"KERASTUNER_ORACLE_PORT={port}: {words}"), err
    assert processes_under(tmp_path) == []  # no worker waits for an oracle that never started
    assert not (tmp_path / "runs" / "tuning").exists()  # and no search folder was begun


def test_a_state_file_cut_off_while_written_keeps_its_previous_state(tmp_path, monkeypatch):
    """Keras Tuner's own save_json empties oracle.json before writing it: a kill in between left a search that
    could not resume (tuning/state_files.py writes beside the file and renames over it)."""
    from keras_tuner.src import utils

    from tuning import state_files

    assert utils.save_json is state_files.save_json  # installed by importing the tuning package
    path = tmp_path / "oracle.json"
    utils.save_json(str(path), {"trials": ["0"]})
    assert json.loads(path.read_text()) == {"trials": ["0"]}

    def killed(self, text):  # the process dies in the middle of the write
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.io.gfile.GFile, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        utils.save_json(str(path), {"trials": ["0", "1"]})
    assert json.loads(path.read_text()) == {"trials": ["0"]}
