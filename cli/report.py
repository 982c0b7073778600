"""The closing report of a run: the test result, where its logs, checkpoint and export went, and the
commands to look at them, serve them and send them a request; the LiteRT files kept, with their scores."""
from __future__ import annotations

import json
from pathlib import Path


def report(config, finished) -> str:
    """The closing lines of a run (training/run.py: Finished): the result, where everything went, and how to
    look at it."""
    serving, run_dir, exported, details, weights = (finished.serving, finished.run_dir, finished.exported,
                                                    finished.details, finished.weights)
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in finished.results.items() if k.startswith("test_")
                        and k not in details)
    lines = ["", f"Test set:     {metrics}"]
    lines += [f"{k + ':':<13} {v:.4f}" if isinstance(v, float) else f"{k + ':':<13} {v}"
              for k, v in details.items()]  # the app's own findings
    if weights:
        same = "  (--deterministic: the same for every rerun of this command, resumed or not)"
        lines.append(f"Weights:      sha256 {weights[:16]}" + (same if config.deterministic else ""))
    lines += [
        f"Logs:         {run_dir}",
        f"Checkpoint:   {run_dir / 'model.keras'}  (resume backups "
        f"in {run_dir / 'backup'} are removed once a run finishes)",
        f"TensorBoard:  tensorboard --logdir {Path(config.logdir) / config.app}",
    ]
    export_path = exported.path
    # LiteRT files left out (the gate's verdict ends the run)
    lines += exported.lines[:-1] if exported.held else exported.lines
    if exported.held is not None:
        lines += [f"Held back:    {exported.held}  (not published; publish it as "
                  f"the next version with: python -m cli.publish {exported.held})"]
    if export_path is not None:
        name, base = serving.name, export_path.parent.resolve()
        signature = ", ".join(f"{k} {s.dtype.name}{list(s.shape)}" for k, s in serving.signature.items())
        lines += [
            f"Export:       {export_path}  (serving_default: {signature} -> {', '.join(serving.outputs)})",
            f"Inspect:      saved_model_cli show --dir {export_path} --all",
            "Serve:        docker run --rm -p 8501:8501 -v "
            f"{base}:/models/{name} -e MODEL_NAME={name} tensorflow/serving",
            f"Request:      curl -s -X POST -d @{export_path / 'sample_request.json'} http://localhost:8501/v1/models/{name}:predict",
            f"  or locally, as TF Serving loads it: python -m cli.rest {export_path} "
            f"{export_path / 'sample_request.json'}",
        ]
        lines += litert_lines(export_path)
    return "\n".join(lines)


def litert_lines(version: Path) -> list[str]:
    """Where the LiteRT files went, with their sizes, test scores and batch-1 latency (evaluation.json)."""
    path = version / "evaluation.json"
    if not path.exists():
        return []
    evaluation = json.loads(path.read_text())
    kind = evaluation["metric"][0]
    kept = {v: e for v, e in evaluation.get("litert", {}).items() if e.get("kept")}
    if not kept:
        return []
    lines = [f"LiteRT:       {version / 'litert'}  (test {kind}: SavedModel {evaluation['savedmodel']['score']:.4f}; "
             "phone preprocessing: preprocessing.json)"]
    lines += [f"  {entry['file']:<27} {entry['bytes'] / 1024:8.0f} KB  {kind} {entry['score']:.4f}  batch-1 p50 "
              f"{entry['p50_ms']:.3f} ms  p99 {entry['p99_ms']:.3f} ms" for entry in kept.values()]
    return lines
