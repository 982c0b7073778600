"""python -m cli.rest MODEL REQUEST.json: a TF Serving REST request, answered from an export as TF Serving loads it.

    python -m cli.rest saved_models/mnist saved_models/mnist/1/sample_request.json

MODEL is a model's folder (saved_models/mnist: its newest version, the one TF
Serving serves) or one version (saved_models/mnist/3, or a held-back version).
The answer is TF Serving's JSON on stdout ({"predictions": ...} for "instances",
{"outputs": ...} for "inputs"; deployment/rest.py). A bad request, or a folder
that holds no model, is one line starting `error:` and exit 2, as TF Serving
answers HTTP 400.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cli.main import USAGE_EXIT, guarded
from core.errors import UsageError

USAGE = "usage: python -m cli.rest MODEL_DIR REQUEST.json   (MODEL_DIR: saved_models/<model> or one of its versions)"


def version_folder(given: str) -> Path:
    """The SavedModel folder MODEL names: itself, or the newest numbered version in it."""
    from deployment.export import existing_versions

    path = Path(given)
    if not path.is_dir():
        raise UsageError(f"{given}: no such folder; give a model's export folder "
                         "(saved_models/<model>) or one of its version folders")
    if (path / "saved_model.pb").exists():
        return path
    versions = existing_versions(path)
    if versions:
        return path / str(versions[-1])
    raise UsageError(f"{given} holds no SavedModel and no numbered version folder; give a model's export folder "
                     "(saved_models/<model>) or one version (saved_models/<model>/<n>, or held/<model>/<name>)")


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return USAGE_EXIT

    def work():
        from deployment.rest import SessionModel

        try:
            body = Path(args[1]).read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"cannot read {args[1]} ({err.strerror})") from None
        print(json.dumps(SessionModel(version_folder(args[0])).predict(body)))

    return guarded(work, "")


if __name__ == "__main__":
    sys.exit(main())
