"""pipelines/parts.py: a one-time pass shared by real processes through a folder, each part done once; a
folder not shared means every process does every part; a dead worker's part is taken over, never waited
for forever."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import parts

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time
from pathlib import Path
from pipelines import parts
folder, log = Path(sys.argv[1]), Path(sys.argv[2])
index, members, pause = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

def work(part, begin, end, touch):
    with open(log, "a") as f:
        f.write(f"{index} {part}\\n")
    time.sleep(pause)
    touch()
    return {"rows": list(range(begin, end)), "by": index}

done = parts.share(work, 10, folder, "look", (index, members), progress=lambda line: print(line, flush=True))
print("ROWS", sum((d["rows"] for d in done), []))
"""


def start(folder: Path, log: Path, index: int, members: int, pause: float = 0.5) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(log), str(index), str(members), str(pause)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)


def done_by(log: Path) -> list[tuple[int, int]]:
    return sorted(tuple(map(int, line.split())) for line in log.read_text().splitlines())


def test_processes_sharing_a_folder_do_each_part_once_and_all_read_every_result(tmp_path):
    workers = [start(tmp_path / "shared", tmp_path / "log", i, 3) for i in range(3)]
    outputs = [w.communicate(timeout=60)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0]
    assert sorted(part for _, part in done_by(tmp_path / "log")) == [0, 1, 2]  # each part once, whoever did it
    assert all(f"ROWS {list(range(10))}" in out for out in outputs)  # every process has every part's result
    assert sum(out.count("is done here") for out in outputs) == 3
    assert not list((tmp_path / "shared").glob("*.claim")) and not list((tmp_path / "shared").glob("*partial*"))
    # A second pass of the same name reads what the first found, even as one process
    again = start(tmp_path / "shared", tmp_path / "log2", 0, 1)
    assert f"ROWS {list(range(10))}" in again.communicate(timeout=60)[0] and not (tmp_path / "log2").exists()


def test_processes_that_do_not_share_the_folder_each_do_every_part(tmp_path):
    workers = [start(tmp_path / f"own{i}", tmp_path / f"log{i}", i, 2, pause=0.1) for i in range(2)]
    outputs = [w.communicate(timeout=60)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert done_by(tmp_path / "log0") == [(0, 0), (0, 1)] and done_by(tmp_path / "log1") == [(1, 0), (1, 1)]
    assert all(f"ROWS {list(range(10))}" in out for out in outputs)


def test_a_part_claimed_by_a_worker_that_stopped_is_taken_over(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    claim = folder / "look-1of2.claim"
    claim.write_text("process 1 on elsewhere")
    old = time.time() - parts.STALE - 5
    os.utime(claim, (old, old))
    lines, calls = [], []

    def work(part, begin, end, touch):
        calls.append(part)
        return {"rows": list(range(begin, end))}

    done = parts.share(work, 10, folder, "look", (0, 2), progress=lines.append)
    assert calls == [0, 1] and sum((d["rows"] for d in done), []) == list(range(10))
    assert any("part 2 of 2 of the look pass was not finished by process 1 on elsewhere; doing it here" in line
               for line in lines)


def test_a_part_another_worker_is_doing_is_waited_for_and_read(tmp_path):
    """A fresh claim is someone's work in progress: wait for its result rather than do it again."""
    folder = tmp_path / "shared"
    other = start(folder, tmp_path / "log", 1, 2, pause=3.0)  # claims part 1 (its own) and part 0 if still free
    deadline = time.time() + 30
    while not (folder / "look-1of2.claim").exists() and time.time() < deadline:
        time.sleep(0.05)
    calls = []

    def work(part, begin, end, touch):
        calls.append(part)
        return {"rows": list(range(begin, end)), "by": 0}

    done = parts.share(work, 10, folder, "look", (0, 2), progress=lambda line: None)
    assert other.communicate(timeout=60)[1] is None and other.returncode == 0
    assert done[1]["by"] == 1 and 1 not in calls  # part 1 was read, not redone
    assert sum((d["rows"] for d in done), []) == list(range(10))


def test_a_worker_whose_part_failed_leaves_it_to_the_others(tmp_path):
    folder = tmp_path / "shared"

    def failing(part, begin, end, touch):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        parts.share(failing, 10, folder, "look", (1, 2), progress=None)
    assert not list(folder.glob("*.claim"))  # released: nobody waits for it
    done = parts.share(lambda part, begin, end, touch: {"rows": list(range(begin, end))}, 10, folder, "look",
                       (0, 2), progress=None)
    assert sum((d["rows"] for d in done), []) == list(range(10))


def test_bounds_cover_every_row_once():
    assert parts.bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert parts.bounds(1, 2) == [(0, 0), (0, 1)]
