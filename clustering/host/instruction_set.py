"""A loud failure, instead of SIGILL, when hnswlib was compiled for instructions this CPU lacks.

hnswlib compiles from source. The images build it for ``x86-64-v3`` (AVX2 and FMA: its distance functions
then make HNSW inserts and queries 1.3-1.4x faster than the portable SSE build a plain ``uv sync`` makes) and
say so in ``HNSWLIB_BUILT_FOR``; a process started on an older CPU would die of an illegal instruction in its
first insert, with nothing in the log to say why.
"""

from __future__ import annotations

import functools
import logging
import os
from enum import StrEnum
from pathlib import Path

from clustering.errors import ClusteringError

#: What the environment variable names, and the CPU flags (/proc/cpuinfo) each level needs beyond the last.
LEVEL_FLAGS = {
    "x86-64-v2": frozenset({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}),
    "x86-64-v3": frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    "x86-64-v4": frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
}


log = logging.getLogger(__name__)


class InstructionSetReason(StrEnum):
    UNKNOWN_LEVEL = "unknown_level"
    MISSING_FLAGS = "missing_flags"


class InstructionSetError(ClusteringError, RuntimeError):
    def __init__(self, reason: InstructionSetReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The first processor's flags; None where there is no x86 cpuinfo to read."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return None


def missing_flags(level: str, flags: frozenset[str]) -> list[str]:
    """The flags of ``level`` (and the levels below it) that ``flags`` lacks, sorted."""
    if level not in LEVEL_FLAGS:
        raise InstructionSetError(
            InstructionSetReason.UNKNOWN_LEVEL,
            f"HNSWLIB_BUILT_FOR={level!r} is none of {', '.join(LEVEL_FLAGS)}",
        )
    levels = list(LEVEL_FLAGS)
    needed = frozenset().union(*(LEVEL_FLAGS[name] for name in levels[: levels.index(level) + 1]))
    return sorted(needed - flags)


@functools.cache
def check_hnswlib_build() -> None:
    """Raises InstructionSetError when ``HNSWLIB_BUILT_FOR`` names a level this CPU does not have."""
    level = os.environ.get("HNSWLIB_BUILT_FOR", "")
    flags = cpu_flags()
    if not level or flags is None:
        return  # a portable build, or not an x86 Linux to check
    missing = missing_flags(level, flags)
    if not missing:
        log.info("hnswlib is built for %s, which this CPU has", level)
        return
    raise InstructionSetError(
        InstructionSetReason.MISSING_FLAGS,
        f"hnswlib in this image is built for {level}, and this CPU lacks {', '.join(missing)}: it would stop "
        "with an illegal instruction. Run it on a newer CPU, or rebuild the image with "
        "--build-arg HNSWLIB_X86_LEVEL= (portable, HNSW 1.3-1.4x slower) or a level this CPU has",
    )
