"""core/memory.py (freed blocks go back to the system) and benchmarks/memory.py (a process tree's memory)."""
import subprocess
import sys
import textwrap
import time

import pytest

from benchmarks.memory import TreeMemory, pss_kb
from conftest import ROOT

# A fresh process: a 20 MB block freed once (glibc then raises its mmap threshold to 20 MB unless it is
# fixed), then a 20 MB block written, a small one after it, and the big one freed: its RSS before and after.
FREED = textwrap.dedent("""
    import ctypes, sys
    from core import memory
    if sys.argv[1] == "fixed":
        assert memory.keep_large_blocks_apart()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def rss():
        return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
    size = 20 << 20
    libc.free(libc.malloc(size))
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    after_it = libc.malloc(64)
    held = rss()
    libc.free(block)
    print(held, rss())
""")


def _freed(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", FREED, mode], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout  # `python -c` puts the working folder first on sys.path
    held, after = out.split()
    return int(held), int(after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_large_block_goes_back_to_the_system_only_with_the_fixed_threshold():
    held, after = _freed("dynamic")
    assert after > held - 5, "glibc's default kept the block (the control: without it the test proves nothing)"
    held, after = _freed("fixed")
    assert after <= held - 15, f"RSS {held} -> {after} MB: the 20 MB block was not returned"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_tree_memory_counts_a_grandchild_and_shared_pages_once():
    # A process that starts a child holding 150 MB of its own; the tree's PSS sum must see both.
    code = textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
                                  "import time; b = bytearray(150 << 20); b[::4096] = b'x' * len(b[::4096]); "
                                  "print('ready', flush=True); time.sleep(3)"], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        time.sleep(1.5)
        child.wait()
    """)
    process = subprocess.Popen([sys.executable, "-c", code])
    with TreeMemory(process.pid, every=0.1) as memory:
        process.wait()
    assert memory.peak_mb is not None and memory.peak_mb >= 150 + 5, memory.peak_mb
    # Two Python interpreters share their libraries' pages: the sum stays under twice one's own RSS + 150.
    assert memory.peak_mb < 150 + 2 * 40, memory.peak_mb


def test_pss_of_a_gone_process_is_none():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    time.sleep(0.1)
    assert pss_kb(int(done.stdout)) is None
