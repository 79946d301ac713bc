"""How many cores this process can keep busy: its CPU affinity, capped by a cgroup CPU quota.

A container given a CPU limit but no cpuset (Kubernetes' default) sees every core of its node in its affinity
mask, and threads sized to that are throttled together. Python's ``os.process_cpu_count`` reads the mask only,
so the quota is read here: cgroup v2's ``cpu.max`` of this process's cgroup and each of its ancestors (a limit
set on a parent applies too), else cgroup v1's ``cpu.cfs_quota_us``/``cpu.cfs_period_us``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_SYSFS = Path("/sys/fs/cgroup")
_SELF = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path = _SYSFS, self_cgroup: Path = _SELF) -> int:
    """Cores in this process's affinity mask, at most the cgroup quota rounded up; at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_quota(cgroup_root, self_cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cgroup_quota(cgroup_root: Path = _SYSFS, self_cgroup: Path = _SELF) -> float | None:
    """The tightest CPU quota over this process's cgroups, in cores; None for none (or no cgroups to read)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path"
            quotas += _v2_quotas(cgroup_root, path)
        elif "cpu" in controllers.split(","):
            quotas += _v1_quota(cgroup_root, controllers, path)
    return min(quotas, default=None)


def cpu_max_quota(text: str) -> float | None:
    """Cores allowed by a cgroup v2 ``cpu.max`` line ("max 100000": no limit; "150000 100000": 1.5)."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def _v2_quotas(cgroup_root: Path, path: str) -> list[float]:
    quotas = []
    # A private cgroup namespace shows the container's own cgroup as "/", mounted at the root.
    folder = cgroup_root / path.lstrip("/")
    while True:
        quota = _read(folder / "cpu.max", cpu_max_quota)
        if quota is not None:
            quotas.append(quota)
        if folder == cgroup_root or cgroup_root not in folder.parents:
            return quotas
        folder = folder.parent


def _v1_quota(cgroup_root: Path, controllers: str, path: str) -> list[float]:
    for mount in (controllers, "cpu,cpuacct", "cpu"):
        folder = cgroup_root / mount
        for candidate in (folder / path.lstrip("/"), folder):  # the process's own cgroup, or the namespace's root
            quota = _read(candidate / "cpu.cfs_quota_us", int)
            period = _read(candidate / "cpu.cfs_period_us", int)
            if quota is not None and period:
                return [quota / period] if quota > 0 else []
    return []


def _read(path: Path, parse: Callable[[str], T | None]) -> T | None:
    try:
        return parse(path.read_text().strip())
    except (OSError, ValueError):
        return None
