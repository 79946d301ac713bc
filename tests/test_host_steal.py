"""The benchmarks' reading of the CPU time the hypervisor took (bench/host_steal.py)."""

from __future__ import annotations

from pathlib import Path

from bench.host_steal import StealCounter


def test_steal_is_the_eighth_figure_of_the_cpu_line_read_afresh_each_time(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  127873 215 24032 143753 314 0 126 246 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    counter = StealCounter(str(stat))
    assert counter.ticks() == 246
    stat.write_text("cpu  127999 215 24032 143800 314 0 126 251 0 0\n")
    assert counter.ticks() == 251
    counter.close()


def test_no_proc_stat_or_an_old_format_reads_as_no_steal(tmp_path: Path) -> None:
    assert StealCounter(str(tmp_path / "absent")).ticks() == 0
    old = tmp_path / "stat"
    old.write_text("cpu  127873 215 24032 143753\n")  # kernels before 2.6.11 had no steal figure
    assert StealCounter(str(old)).ticks() == 0
