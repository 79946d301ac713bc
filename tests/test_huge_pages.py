"""The writer's large allocations go back to 2 MB pages after a snapshot child's writes split them."""

from __future__ import annotations

import mmap
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from clustering.host.huge_pages import HUGE_PAGE, HugePageCollapser, Mapping, collapsible, mappings, small_pages

SMAPS = """\
7f0000001000-7f0010001000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:              200000 kB
AnonHugePages:     40960 kB
VmFlags: rd wr mr mw me ac hg
7f0020000000-7f0030000000 rw-p 00000000 00:00 0
Rss:              262144 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac
7f0040000000-7f0050000000 rw-p 00000000 00:00 0
Rss:              262144 kB
AnonHugePages:    251904 kB
VmFlags: rd wr mr mw me ac hg
"""


def test_only_mappings_that_ask_for_huge_pages_and_hold_many_small_ones_are_collapsed() -> None:
    found = mappings(SMAPS)
    assert found[0] == Mapping(0x7F0000001000, 0x7F0010001000, 200_000, 40_960, asks_huge=True)
    assert [m.asks_huge for m in found] == [True, False, True]
    # The first: 156 MB in small pages, its unaligned ends left out. The second never asked for huge pages
    # (collapsing it would override its owner); the third is 10 MB short of whole.
    assert collapsible(found) == [(0x7F0000200000, 0x7F0010000000)]
    assert all(start % HUGE_PAGE == 0 and end % HUGE_PAGE == 0 for start, end in collapsible(found))


def _collapse_supported() -> bool:
    enabled = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return enabled.exists() and "[never]" not in enabled.read_text() and (major, minor) >= (6, 1)


def _mapping_of(array: np.ndarray) -> Mapping:
    address = array.ctypes.data + array.nbytes // 2  # numpy advises from its first whole page on: a mapping of its own
    return next(m for m in mappings(Path("/proc/self/smaps").read_text()) if m.start <= address < m.end)


@pytest.mark.skipif(not _collapse_supported(), reason="needs transparent huge pages and Linux 6.1 (MADV_COLLAPSE)")
def test_pages_split_by_writes_while_a_child_shared_them_are_collapsed_again() -> None:
    memory = np.ones(64 << 20, np.uint8)  # numpy asks large arrays for huge pages
    assert _mapping_of(memory).asks_huge
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    try:
        memory[::4096] = 2  # a write in every 4 KB page while the child shares them: each copies 4 KB
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert _mapping_of(memory).small_bytes >= 48 << 20

    collapser = HugePageCollapser()
    collapser.request()
    collapser.wait(60)

    assert _mapping_of(memory).small_bytes < 8 << 20
    assert int(memory[::4096].sum()) == 2 * len(memory[::4096])  # what memory holds is unchanged


def _huge_pages_on_fault() -> bool:
    enabled = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return enabled.exists() and "[never]" not in enabled.read_text()


@pytest.mark.skipif(not _huge_pages_on_fault(), reason="needs transparent huge pages")
def test_memory_first_touched_inside_small_pages_comes_in_4k_pages_and_huge_ones_after() -> None:
    # Fresh mappings of their own: memory malloc reuses (numpy's large arrays may come from the heap) may have
    # been touched, and be in huge pages, before. Adjacent mappings merge, so the process's total is compared.
    inside, after = (np.frombuffer(_fresh_asking_huge(32 << 20), np.uint8) for _ in range(2))
    before = _huge_kb()
    with small_pages():
        inside[:] = 1
    touched_inside = _huge_kb()
    after[:] = 1
    assert touched_inside == before
    assert _huge_kb() - touched_inside >= 16 << 10  # most of it in 2 MB pages (the ends may be unaligned)


def _fresh_asking_huge(size: int) -> mmap.mmap:
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared memory is shmem: no THP
    region.madvise(mmap.MADV_HUGEPAGE)
    return region


def _huge_kb() -> int:
    """This process's anonymous memory in 2 MB pages, in KB (smaps_rollup: all mappings as one)."""
    (everything,) = mappings(Path("/proc/self/smaps_rollup").read_text())
    return everything.huge_kb
