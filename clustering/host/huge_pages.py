"""Large allocations put back in 2 MB pages after each snapshot child ends, so that the next fork stays cheap;
and bursts of fresh memory taken in 4 KB pages, which are faster to fault in (``small_pages``).

The images run with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``: glibc asks Linux for transparent huge pages
(``madvise(MADV_HUGEPAGE)``) for its large allocations, hnswlib's vectors and graph among them, and a fork
copies one page-table entry per 2 MB there instead of 512. Forks undo it. While a snapshot child shares the
writer's pages, every write of the writer splits the 2 MB page it lands in (Linux copies 4 KB on write), and
hnswlib's inserts write all over the graph: by the next snapshot nearly all of it is in 4 KB pages again, and
at a million faces the fork took up to 101 ms (README, Speed and memory). So when a child has ended, a thread
asks Linux to collapse those mappings into 2 MB pages again (``MADV_COLLAPSE``, Linux 6.1): the kernel copies
on that thread while the writer goes on.

Only mappings their owner asked huge pages for are touched (``hg`` in /proc/self/smaps' VmFlags), and only
where a good part is in small pages. Collapsing never changes what memory holds, so a failure (an older
kernel, no free huge pages, pages not yet touched) only leaves the fork as costly as it was: it is logged at
debug level and the next child's end tries again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: From linux/mman.h (Linux 6.1) and linux/prctl.h (Linux 3.15).
MADV_COLLAPSE = 25
PR_SET_THP_DISABLE = 41
PR_GET_THP_DISABLE = 42
HUGE_PAGE = 2 << 20
#: A mapping is worth collapsing when at least this much of it is in small pages.
MIN_SPLIT_BYTES = 32 << 20

_SMAPS = Path("/proc/self/smaps")
_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ")
#: Each mapping's lines start at a line with its address range.
_MAPPING = re.compile(r"\n(?=[0-9a-f]+-[0-9a-f]+ )")


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    rss_kb: int
    huge_kb: int
    asks_huge: bool

    @property
    def small_bytes(self) -> int:
        return (self.rss_kb - self.huge_kb) * 1024


def mappings(smaps: str) -> list[Mapping]:
    """The mappings described by the text of a /proc/PID/smaps file."""
    found = []
    for block in _MAPPING.split(smaps):
        header = _HEADER.match(block)
        if header is None:
            continue
        fields = dict(line.split(":", 1) for line in block.splitlines()[1:] if ":" in line)
        found.append(
            Mapping(
                int(header.group(1), 16),
                int(header.group(2), 16),
                int(fields.get("Rss", "0").split()[0]),
                int(fields.get("AnonHugePages", "0").split()[0]),
                "hg" in fields.get("VmFlags", "").split(),
            )
        )
    return found


def collapsible(found: list[Mapping], min_split: int = MIN_SPLIT_BYTES) -> list[tuple[int, int]]:
    """The whole 2 MB pages, as (start, end), of the mappings that ask for huge pages and hold at least
    ``min_split`` bytes in small ones."""
    ranges = []
    for mapping in found:
        start = -(-mapping.start // HUGE_PAGE) * HUGE_PAGE
        end = mapping.end // HUGE_PAGE * HUGE_PAGE
        if mapping.asks_huge and mapping.small_bytes >= min_split and end > start:
            ranges.append((start, end))
    return ranges


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    libc = _libc()
    if libc is None:
        return None
    function = libc.madvise
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    madvise: Callable[[int, int, int], int] = function
    return madvise


def collapse(ranges: list[tuple[int, int]]) -> int:
    """Asks Linux to put these ranges in 2 MB pages; returns the bytes asked for. The kernel does what it can
    (a range with untouched pages reports EINVAL yet collapses the rest), so errors are only logged."""
    madvise = _madvise()
    if madvise is None:
        return 0
    for start, end in ranges:
        if madvise(start, end - start, MADV_COLLAPSE) != 0:
            log.debug("MADV_COLLAPSE of %d MB: errno %d", (end - start) >> 20, ctypes.get_errno())
    return sum(end - start for start, end in ranges)


@functools.cache
def _prctl() -> Callable[[int, int, int, int, int], int] | None:
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return None
    function = libc.prctl
    function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    function.restype = ctypes.c_int
    prctl: Callable[[int, int, int, int, int], int] = function
    return prctl


@contextmanager
def small_pages() -> Iterator[None]:
    """Inside, memory this process touches for the first time comes in 4 KB pages, whatever it asked for.

    For a burst of fresh memory filled at once, on the writer's thread: hnswlib's resize builds a lock per
    item of its new capacity (44 bytes a face with the levels: 46 MB at a million). In 2 MB pages each fault
    zeroes a whole huge page, which a VM may first have to get back from its host (free page reporting hands
    free 2 MB blocks back): 45-120 ms at that resize here, against 26 ms in 4 KB pages, which Linux takes from
    its recently freed ones. The collapse after the next snapshot child puts them in huge pages again.
    (``PR_SET_THP_DISABLE`` holds for the whole process: a fault on another thread meanwhile also gets 4 KB.)
    """
    prctl = _prctl()
    if prctl is None or prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 0:  # not Linux, or off already
        yield
        return
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    try:
        yield
    finally:
        prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)


class HugePageCollapser:
    """Collapses this process's split huge-page mappings on a thread of its own, one pass at a time."""

    def __init__(self, smaps: Path = _SMAPS) -> None:
        self._smaps = smaps
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Starts a pass unless one is running (or this is not Linux)."""
        with self._lock:
            if (self._thread is not None and self._thread.is_alive()) or not self._smaps.exists():
                return
            self._thread = threading.Thread(target=self._pass, name="huge-page-collapse", daemon=True)
            self._thread.start()

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the running pass (if any) ends."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _pass(self) -> None:
        started = time.perf_counter()
        try:
            asked = collapse(collapsible(mappings(self._smaps.read_text())))
        except OSError as exc:
            log.debug("could not read %s to collapse huge pages: %s", self._smaps, exc)
            return
        if asked:
            log.debug("asked for %d MB in huge pages in %.2f s", asked >> 20, time.perf_counter() - started)


#: One per process: the address space is the process's, whichever space's child ended.
COLLAPSER = HugePageCollapser()
