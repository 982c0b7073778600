"""python -m cli.publish EXPORT_DIR/held/<model>/<name>: publish a version the gate held back, as the next version.

    python -m cli.publish saved_models/held/mnist/20261204-101500-4242

The publishing gate (deployment/gate.py) moves a version that scores worse than
the newest published one to EXPORT_DIR/held/<model>/<name>/, with
NOT_PUBLISHED.txt saying why. This renames it into TF Serving's base path as the
next version number, checked as it was, without training again.
"""
from __future__ import annotations

import sys

from cli.main import USAGE_EXIT, guarded

USAGE = "usage: python -m cli.publish EXPORT_DIR/held/<model>/<name>"


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return USAGE_EXIT

    def work():
        from deployment.export import publish_held

        print(publish_held(args[0]))

    return guarded(work, "")


if __name__ == "__main__":
    sys.exit(main())
