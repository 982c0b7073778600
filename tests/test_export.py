"""Export for TF Serving: a fresh process loads serving_default and agrees with the
in-memory model on real test images; versions count up; failures publish nothing."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from apps import mnist
from conftest import ROOT
from deployment import export

SERVING = mnist.serving(None, None)


def _tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


RELOAD = """
import json, sys
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
fn = loaded.signatures["serving_default"]
images = np.load(sys.argv[2])
out = fn(images=tf.constant(images))
specs = fn.structured_input_signature[1]
print(json.dumps({"inputs": {k: [str(v.dtype.name), v.shape.as_list()] for k, v in specs.items()},
                  "probabilities": out["probabilities"].numpy().tolist(), "class": out["class"].numpy().tolist()}))
"""


def test_round_trip_in_a_fresh_process_matches_the_in_memory_model(trained_mlp, mnist_arrays, tmp_path):
    model, config = trained_mlp
    images = mnist_arrays["x_test"][:64]
    path = export.export_version(SERVING, model, config, tmp_path / "mnist", mnist.serving_inputs(images[:8])).path
    assert path == tmp_path / "mnist" / "1"
    assert json.loads((path / "run_config.json").read_text())["model"] == "mlp"
    np.save(tmp_path / "images.npy", images[..., 0])
    result = subprocess.run([sys.executable, "-c", RELOAD, str(path), str(tmp_path / "images.npy")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["inputs"] == {"images": ["uint8", [None, 28, 28]]}  # raw uint8 images, named
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    assert served["class"] == expected.argmax(-1).tolist()
    accuracy = np.mean(np.array(served["class"]) == mnist_arrays["y_test"][:64])
    assert accuracy > 0.85  # a trained model, not noise
    request = json.loads((path / "sample_request.json").read_text())
    assert np.array(request["instances"][0]["images"]).shape == (28, 28)


def test_versions_count_up_and_earlier_ones_are_untouched(trained_mlp, mnist_arrays, tmp_path):
    model, config = trained_mlp
    inputs = mnist.serving_inputs(mnist_arrays["x_test"][:4])
    base = tmp_path / "mnist"
    first = export.export_version(SERVING, model, config, base, inputs).path
    before = _tree_digest(first)
    (base / "7").mkdir()  # someone else's version 7: the next is 8
    second = export.export_version(SERVING, model, config, base, inputs).path
    assert (first.name, second.name) == ("1", "8")
    assert _tree_digest(first) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist"]  # no staging folder left beside it


@pytest.mark.parametrize("failure", ["write", "verify"])
def test_a_failed_export_publishes_nothing_and_leaves_no_debris(trained_mlp, mnist_arrays, tmp_path, monkeypatch,
                                                                failure):
    model, config = trained_mlp
    inputs = mnist.serving_inputs(mnist_arrays["x_test"][:4])
    base = tmp_path / "mnist"
    first = export.export_version(SERVING, model, config, base, inputs).path
    before = _tree_digest(first)

    def half_write(app, model, path):
        path.mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    def bad_verify(*args):
        raise RuntimeError("the exported SavedModel failed verification in a fresh process")

    if failure == "write":
        monkeypatch.setattr(export, "write_saved_model", half_write)
    else:
        monkeypatch.setattr(export, "check_in_fresh_process", bad_verify)
    with pytest.raises((OSError, RuntimeError)):
        export.export_version(SERVING, model, config, base, inputs)
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no version 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist"]  # no staging folder
    assert _tree_digest(first) == before


def test_verification_catches_a_model_that_disagrees(trained_mlp, mnist_arrays, tmp_path):
    model, config = trained_mlp
    inputs = mnist.serving_inputs(mnist_arrays["x_test"][:4])
    path = tmp_path / "m"
    export.write_saved_model(SERVING, model, path)
    (path / "sample_request.json").write_text(json.dumps(export.sample_request(inputs)))
    serve, _ = export.serving_endpoint(SERVING, model)
    expected = {k: np.asarray(v) for k, v in serve(tf.constant(inputs["images"])).items()}
    plan = {"metric": [], "variants": [], "keep": [], "core": None, "previous": None, "precision": "float32",
            "float32": None}
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "check.json").write_text(json.dumps(plan))
    export.check_in_fresh_process(path, tmp_path / "w", inputs, expected, plan, None)  # agrees: no error
    expected["probabilities"] = expected["probabilities"][:, ::-1]
    (tmp_path / "w" / "report.json").unlink()
    with pytest.raises(RuntimeError, match="failed verification.*differs from the in-memory model"):
        export.check_in_fresh_process(path, tmp_path / "w", inputs, expected, plan, None)


def test_publishing_takes_the_next_number_when_another_run_got_there_first(tmp_path, monkeypatch):
    base = tmp_path / "mnist"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"theirs")
    staging = base / ".tmp-1-123"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"ours")
    calls = iter([1, 2])  # as if both runs had counted versions before either published
    monkeypatch.setattr(export, "next_version", lambda _: next(calls))
    final = export.publish(staging, base)
    assert final == base / "2" and (final / "saved_model.pb").read_bytes() == b"ours"
    assert (base / "1" / "saved_model.pb").read_bytes() == b"theirs" and not staging.exists()
