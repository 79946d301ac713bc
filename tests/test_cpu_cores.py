"""The cores a cluster writer sizes its HNSW threads to: its affinity, capped by a container's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clustering.host.cpu_cores import cgroup_quota, cpu_max_quota, usable_cores


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_cpu_max_lines() -> None:
    assert cpu_max_quota("max 100000\n") is None
    assert cpu_max_quota("150000 100000") == 1.5
    assert cpu_max_quota("200000 100000") == 2.0


def test_a_container_with_its_own_cgroup_namespace_reads_its_limit_at_the_root(tmp_path: Path) -> None:
    _tree(tmp_path, {"sys/cpu.max": "150000 100000\n", "self": "0::/\n"})
    assert cgroup_quota(tmp_path / "sys", tmp_path / "self") == 1.5
    assert usable_cores(tmp_path / "sys", tmp_path / "self") == min(2, len(os.sched_getaffinity(0)))


def test_the_tightest_limit_of_the_cgroup_and_its_parents_applies(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "sys/kubepods/cpu.max": "100000 100000\n",  # a limit set on a parent
            "sys/kubepods/pod1/cpu.max": "max 100000\n",
            "sys/kubepods/pod1/app/cpu.max": "400000 100000\n",
            "self": "0::/kubepods/pod1/app\n",
        },
    )
    assert cgroup_quota(tmp_path / "sys", tmp_path / "self") == 1.0
    assert usable_cores(tmp_path / "sys", tmp_path / "self") == 1


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    limited = tmp_path / "limited"
    _tree(
        limited,
        {
            "sys/cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
            "sys/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "self": "4:memory:/x\n2:cpu,cpuacct:/\n",
        },
    )
    assert cgroup_quota(limited / "sys", limited / "self") == 0.5
    assert usable_cores(limited / "sys", limited / "self") == 1
    unlimited = tmp_path / "unlimited"
    _tree(
        unlimited,
        {
            "sys/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "self": "2:cpu,cpuacct:/\n",
        },
    )
    assert cgroup_quota(unlimited / "sys", unlimited / "self") is None


@pytest.mark.parametrize("self_cgroup", ["missing", "0::/\n"])
def test_no_quota_to_read_leaves_the_affinity(tmp_path: Path, self_cgroup: str) -> None:
    if self_cgroup != "missing":
        (tmp_path / "self").write_text(self_cgroup)
    assert usable_cores(tmp_path / "sys", tmp_path / "self") == len(os.sched_getaffinity(0))
