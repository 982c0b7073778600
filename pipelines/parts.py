"""Work over many files cut into parts that a cluster's workers share through a folder they can all see.

    done = parts.share(work, folder, "decode", member=(index, members), progress=print)
    # done[p] is part p's result (a dict), whoever did it: work(p, begin, end, touch) for rows begin:end

A one-time pass over a user's folder (reading every picture's header,
decoding every picture) costs as much as an epoch. Under multi_worker every
worker needs its findings before training starts; with DATA_DIR on storage
they all see, each does one part and reads the others'. Each process goes
through the parts starting at its own (worker k at part k). A part whose
result is in the folder it reads; one it can claim (a file made with O_EXCL,
touched as the work goes) it does; one another process claimed it leaves and
comes back to wait for. A claim nobody touched for STALE seconds (its worker
died or froze) it takes over, so nobody waits forever. Workers that do not
share the folder (separate machines, each with its own DATA_DIR) never see
each other's claims and each does every part, as one process would. A part's
result appears whole or not at all: written aside, then renamed.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

STALE = 120.0  # seconds without a touch after which a claimed part is taken over
POLL = 0.5  # seconds between looks at the parts other processes are doing


def bounds(rows: int, members: int) -> list[tuple[int, int]]:
    """members contiguous parts of rows, as even as they can be."""
    return [(p * rows // members, (p + 1) * rows // members) for p in range(members)]


def result_path(folder: Path, name: str, part: int, members: int) -> Path:
    return folder / f"{name}-{part}of{members}.json"


def finished(folder: Path, name: str) -> list[dict] | None:
    """Every part's result of an earlier pass called name, however many workers shared it; None if no pass
    finished (a later run, say a single process after a cluster, reads what the cluster found)."""
    for first in sorted(folder.glob(f"{name}-0of*.json")):
        members = int(first.stem.rsplit("of", 1)[1])
        found = [_read(result_path(folder, name, p, members)) for p in range(members)]
        if all(r is not None for r in found):
            return found
    return None


def share(work: Callable, rows: int, folder: Path, name: str, member: tuple[int, int] = (0, 1),
          progress=print) -> list[dict]:
    """Every part's result, in part order (an earlier pass's, if one finished). work(part, begin, end, touch)
    -> a JSON-able dict; it calls touch() now and then (a claim untouched for STALE seconds is taken over).
    The folder keeps the results: a second run reads them."""
    earlier = finished(folder, name)
    if earlier is not None:
        return earlier
    index, members = member
    folder.mkdir(parents=True, exist_ok=True)
    spans = bounds(rows, members)
    results: dict[int, dict] = {}
    waiting: list[int] = []
    for part in [(index + k) % members for k in range(members)]:
        found = _read(result_path(folder, name, part, members))
        if found is not None:
            results[part] = found
        elif _claim(folder, name, part, members):
            results[part] = _do(work, folder, name, part, members, spans[part], progress)
        else:
            waiting.append(part)
    shown = 0.0
    while waiting:
        part = waiting[0]
        found = _read(result_path(folder, name, part, members))
        if found is not None:
            results[waiting.pop(0)] = found
            continue
        claim = _claim_path(folder, name, part, members)
        age = _age(claim)
        if age is None and _read(result_path(folder, name, part, members)) is not None:
            continue  # finished between the two looks: its result is written before its claim goes
        if age is None or age > STALE:  # its worker finished without a result (it failed), or stopped touching
            if progress:
                progress(f"  part {part + 1} of {members} of the {name} pass was not finished by "
                         f"{_holder(claim) or 'its worker'}; doing it here")
            _release(claim)
            if _claim(folder, name, part, members):
                results[waiting.pop(0)] = _do(work, folder, name, part, members, spans[part], progress)
            continue
        if progress and time.time() - shown > 10:
            shown = time.time()
            progress(f"  waiting for part {part + 1} of {members} of the {name} pass ({_holder(claim)})")
        time.sleep(POLL)
    return [results[p] for p in range(members)]


def _do(work, folder: Path, name: str, part: int, members: int, span: tuple[int, int], progress) -> dict:
    claim = _claim_path(folder, name, part, members)
    if progress and members > 1:
        progress(f"  part {part + 1} of {members} of the {name} pass ({span[1] - span[0]:,} files) is done here")
    try:
        result = work(part, *span, lambda: _touch(claim))
        path = result_path(folder, name, part, members)
        aside = path.with_suffix(f".{os.getpid()}.partial")
        aside.write_text(json.dumps(result))
        aside.replace(path)
        return result
    finally:
        _release(claim)


def _claim_path(folder: Path, name: str, part: int, members: int) -> Path:
    return folder / f"{name}-{part}of{members}.claim"


def _claim(folder: Path, name: str, part: int, members: int) -> bool:
    try:
        fd = os.open(_claim_path(folder, name, part, members), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"process {os.getpid()} on {socket.gethostname()}")
    return True


def _touch(claim: Path) -> None:
    try:
        os.utime(claim)
    except OSError:
        pass  # taken over after all: the result is written either way, whole


def _age(claim: Path) -> float | None:
    try:
        return time.time() - claim.stat().st_mtime
    except OSError:
        return None


def _holder(claim: Path) -> str:
    try:
        return claim.read_text()
    except OSError:
        return ""


def _release(claim: Path) -> None:
    try:
        claim.unlink()
    except OSError:
        pass


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
