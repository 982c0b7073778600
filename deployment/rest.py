"""TF Serving's REST predict API, run against an export the way TF Serving loads it.

TF Serving does not go through Python's object graph (tf.saved_model.load): its
C++ loader restores the MetaGraph tagged "serve" and feeds and fetches the
SignatureDef's tensors by name. The TF1 session loader (the code path of
`saved_model_cli run`) does the same, so that is what this module uses. Request
bodies are converted as TF Serving's REST API converts them (its json_tensor.cc):
  {"instances": [row, ...]}   the row format: each row one example, an object of
                              named inputs (a bare value when there is one input);
                              every input must have the same batch size
  {"inputs": {name: batch}}   the columnar format (a bare batch for one input)
  {"b64": "..."}              base64 bytes for a string input
and answered as TF Serving answers them: {"predictions": [...]} per row, or
{"outputs": {...}} for the columnar format.

    python -m cli.rest saved_models/mnist saved_models/mnist/3/sample_request.json

A bad request (unknown input, wrong dtype or shape, ragged batch, no
examples) is one line saying what is wrong, exit 2, like TF Serving's 400s.
"""
from __future__ import annotations

import base64
import json

import numpy as np

from core.errors import UsageError


class BadRequest(UsageError):
    """What TF Serving answers with HTTP 400: the request, not the model, is wrong."""


def _value(name: str, value, dtype):
    """One JSON leaf as the signature's dtype, or BadRequest."""
    if dtype == np.object_:
        if isinstance(value, dict) and set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError):
                raise BadRequest(f"input {name!r}: {value['b64']!r} is not valid base64") from None
        if isinstance(value, str):
            return value.encode("utf-8")
        raise BadRequest(f"input {name!r} takes strings, got {json.dumps(value)[:40]}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"input {name!r} takes {np.dtype(dtype).name} numbers, got {json.dumps(value)[:40]}")
    if np.issubdtype(dtype, np.integer) and not float(value).is_integer():
        raise BadRequest(f"input {name!r} takes {np.dtype(dtype).name}, got the fraction {value}")
    if np.issubdtype(dtype, np.integer) and not np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
        raise BadRequest(f"input {name!r} takes {np.dtype(dtype).name}, {value} is out of its range")
    return value


def _tensor(name: str, batch, dtype, shape: list) -> np.ndarray:
    """A batch (a JSON list) as a NumPy array of the signature's dtype and shape."""
    def convert(node):
        return [convert(n) for n in node] if isinstance(node, list) else _value(name, node, dtype)

    if not isinstance(batch, list) or not batch:
        raise BadRequest(f"input {name!r} has no examples: give a non-empty list")
    try:
        array = np.array(convert(batch), dtype=dtype)
    except ValueError:
        raise BadRequest(f"input {name!r} is ragged: every example must have the same shape {shape[1:]}") from None
    if array.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, array.shape)):
        raise BadRequest(f"input {name!r} has shape {list(array.shape)}, expected {['batch', *shape[1:]]}")
    return array


def to_feeds(body, signature: dict) -> tuple[dict, bool]:
    """A request body -> ({input name: array}, row format?). signature: name -> (numpy dtype, shape)."""
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError as err:
            raise BadRequest(f"the request is not JSON ({err})") from None
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise BadRequest('the request must be a JSON object with exactly one of "instances" or "inputs"')
    if body.get("signature_name", "serving_default") != "serving_default":
        raise BadRequest(f"no signature {body['signature_name']!r}; this model has serving_default")
    names = list(signature)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise BadRequest('"instances" must be a non-empty list of examples')
        if len(names) == 1:  # bare values for the one input (a {"b64": ...} is a value too)
            rows = [r if _named(r) else {names[0]: r} for r in rows]
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest(f"instance {i} must be an object of named inputs {names}")
            _check_names(set(row), names, f"instance {i}")
        columns = {n: [row[n] for row in rows] for n in names}
    else:
        columns = body["inputs"]
        if len(names) == 1 and not _named(columns):
            columns = {names[0]: columns}
        if not _named(columns):
            raise BadRequest(f'"inputs" must be an object of named inputs {names}')
        _check_names(set(columns), names, '"inputs"')
    feeds = {n: _tensor(n, columns[n], *signature[n]) for n in names}
    sizes = {n: len(v) for n, v in feeds.items()}
    if len(set(sizes.values())) > 1:
        raise BadRequest(f"inputs have different batch sizes {sizes}: every input needs one value per example")
    return feeds, "instances" in body


def _named(value) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _check_names(given: set, names: list, where: str) -> None:
    unknown, missing = sorted(given - set(names)), sorted(set(names) - given)
    if unknown:
        raise BadRequest(f"{where}: unknown input {unknown[0]!r}; this model takes {names}")
    if missing:
        raise BadRequest(f"{where}: input {missing[0]!r} is missing; this model takes {names}")


def _json(array: np.ndarray):
    if array.dtype == np.object_ or array.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def response(outputs: dict, rows: bool) -> dict:
    """Outputs as TF Serving's REST API returns them."""
    if rows:
        size = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            return {"predictions": _json(next(iter(outputs.values())))}
        return {"predictions": [{k: _json(np.asarray(v[i])) for k, v in outputs.items()} for i in range(size)]}
    return {"outputs": {k: _json(np.asarray(v)) for k, v in outputs.items()}}


class SessionModel:
    """A SavedModel as TF Serving loads it: the "serve" MetaGraph in a TF1 session, tensors by name."""

    def __init__(self, path):
        import tensorflow as tf
        from tensorflow.python.util import deprecation

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        # The TF1 loader is deprecated in Python (not in TF Serving, whose C++ loader it mirrors): its
        # three-line warning would come before every answer and every one-line refusal.
        with self.graph.as_default(), deprecation.silence():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        if "serving_default" not in meta.signature_def:
            raise UsageError(f"{path} has no serving_default signature")
        signature = meta.signature_def["serving_default"]
        self.inputs = {k: v.name for k, v in signature.inputs.items()}
        self.outputs = {k: v.name for k, v in signature.outputs.items()}
        self.signature = {k: (np.object_ if v.dtype == tf.string.as_datatype_enum
                              else tf.dtypes.as_dtype(v.dtype).as_numpy_dtype,
                              [d.size for d in v.tensor_shape.dim]) for k, v in signature.inputs.items()}

    def run(self, feeds: dict) -> dict:
        import tensorflow as tf

        try:
            return self.session.run(self.outputs, feed_dict={self.inputs[k]: v for k, v in feeds.items()})
        except tf.errors.InvalidArgumentError as err:  # the model refused the values (a picture that is none)
            said = next((line.strip() for line in err.message.splitlines() if "assertion failed" in line),
                        err.message.splitlines()[0])
            raise BadRequest(said.replace("assertion failed: ", "").strip("[]")) from None

    def predict(self, body) -> dict:
        feeds, rows = to_feeds(body, self.signature)
        return response(self.run(feeds), rows)
