"""CPU time the hypervisor took from this virtual machine ("steal"), as Linux counts it in /proc/stat.

On a shared VM the host may run something else on our virtual CPUs, and everything in the guest stops
meanwhile, whatever it was doing. A benchmark's slowest single operation is then often the host's pause, not
the code's: bench/clustering.py reads this counter around every face and prints the longest face the host did
not interrupt beside the longest of all. Linux counts steal in clock ticks (10 ms on most kernels), from the
hypervisor's own accounting (KVM's steal clock, which Firecracker guests have): a face that lost less than a
tick may not show it, so the figure is a lower bound on what the host took.
"""

from __future__ import annotations

import os


class StealCounter:
    """Reads the steal ticks of all CPUs together; 0 where there is no /proc/stat (not Linux)."""

    TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01

    def __init__(self, path: str = "/proc/stat") -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    def ticks(self) -> int:
        if self._fd is None:
            return 0
        # pread at 0 makes procfs write the file afresh: one system call, about 7 us here.
        fields = os.pread(self._fd, 256, 0).split(b"\n", 1)[0].split()
        return int(fields[8]) if fields[0] == b"cpu" and len(fields) > 8 else 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
