"""The former text app, kept as an alias: it was two tasks, now two apps.

    python -m apps.text [flags]             -> python -m apps.sentiment [flags]
    python -m apps.text --task lm [flags]   -> python -m apps.charlm [flags]

Their served models are now named `sentiment` and `charlm` (before: `text`
and `text_lm`). Prefer the new commands; this one says which it ran.
"""
import sys

if __name__ == "__main__":
    import runpy

    argv = sys.argv[1:]
    task = "sentiment"
    for i, arg in enumerate(argv):
        if arg == "--task" and i + 1 < len(argv) or arg.startswith("--task="):
            task = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            del argv[i:i + (1 if "=" in arg else 2)]
            break
    if task not in ("sentiment", "lm"):
        print(f"error: --task must be sentiment or lm, got {task!r} (see --help of apps.sentiment / apps.charlm)",
              file=sys.stderr)
        raise SystemExit(2)
    app = "apps.sentiment" if task == "sentiment" else "apps.charlm"
    print(f"apps.text is now {app}: running python -m {app} {' '.join(argv)}", file=sys.stderr, flush=True)
    sys.argv = [sys.argv[0], *argv]
    runpy.run_module(app, run_name="__main__", alter_sys=True)
