"""docs/results.md's tables, made from the benchmarks' JSON files in docs/results/.

    python -m benchmarks.precision --json docs/results                        # a benchmark writes its rows
    python -m benchmarks.results                                              # rebuild every table in docs/results.md
    python -m benchmarks.results --check                                      # exit 1 where a table is not its JSON's

A table in docs/results.md is the block between `<!-- table: NAME -->` and
`<!-- /table -->`; NAME.json in docs/results/ fills it: a line with the command,
date, host CPU and commit that produced it, then the rows as the benchmark's
own `markdown(record)` draws them (the module is the first word of NAME:
precision-check -> benchmarks/precision.py), or, for a table kept as the run
printed it (its record has "columns" and "cells"), those cells. The prose
between the tables is written by hand; the figures in the tables never are.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
RECORDS = ROOT / "docs" / "results"
BLOCK = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


def provenance(record: dict) -> str:
    """The line above a table: what produced it, where and when."""
    host = "host CPU not recorded" if record["host_cpu"] == "not recorded" else record["host_cpu"]
    cores = f", {record['cores']} cores" if record.get("cores") else ""
    return (f"`{record['command']}`; {record['date']}, {host}{cores}, commit `{record['commit']}`, TensorFlow "
            f"{record.get('tensorflow', '?')}")


def render(name: str) -> str:
    path = RECORDS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"error: docs/results.md has a table {name!r} but docs/results/{name}.json does not exist")
    record = json.loads(path.read_text())
    if "columns" in record:  # a table as its run printed it, kept as cells
        table = "\n".join("| " + " | ".join(row) + " |" for row in
                          [record["columns"], ["---"] * len(record["columns"]), *record["cells"]])
    else:
        table = importlib.import_module(f"benchmarks.{name.split('-')[0]}").markdown(record).strip()
    notes = "".join(f"\n- {note}" for note in record.get("notes", []))
    return f"{provenance(record)}\n\n{table}\n{notes + chr(10) if notes else ''}"


def rebuilt(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its JSON")
    args = parser.parse_args(argv)
    text = RESULTS.read_text()
    new = rebuilt(text)
    names = [m.group(2) for m in BLOCK.finditer(text)]
    unused = sorted(p.stem for p in RECORDS.glob("*.json") if p.stem not in names)
    if args.check:
        if new != text:
            print("error: docs/results.md's tables differ from docs/results/*.json; run python -m benchmarks.results",
                  file=sys.stderr)
            return 1
        print(f"docs/results.md: {len(names)} tables, each its JSON's" + (f"; unused: {unused}" if unused else ""))
        return 0
    RESULTS.write_text(new)
    print(f"docs/results.md: {len(names)} tables rebuilt" + (f"; JSON files no table uses: {unused}" if unused else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
