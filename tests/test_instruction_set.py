"""An image whose hnswlib is built for instructions the CPU lacks fails with a message, not SIGILL."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustering.host import instruction_set
from clustering.host.instruction_set import InstructionSetError, InstructionSetReason, cpu_flags, missing_flags
from clustering.index import HnswIndex
from clustering.settings import IndexSettings
from workers.cli import EXIT_FAILED, main

SANDY_BRIDGE = "fpu sse sse2 ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm avx xsave"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


def test_an_avx_only_cpu_lacks_what_x86_64_v3_needs(tmp_path: Path) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, SANDY_BRIDGE))
    assert flags is not None
    assert missing_flags("x86-64-v2", flags) == []
    assert missing_flags("x86-64-v3", flags) == ["abm", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe"]
    assert "avx512f" in missing_flags("x86-64-v4", flags)  # and those of v3 too
    assert "avx2" in missing_flags("x86-64-v4", flags)


def test_no_x86_cpuinfo_means_nothing_to_check(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "absent") is None
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n")
    assert cpu_flags(arm) is None


def test_an_index_on_a_cpu_below_the_build_refuses_to_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = _cpuinfo(tmp_path, SANDY_BRIDGE)
    monkeypatch.setattr(instruction_set, "cpu_flags", lambda: cpu_flags(cpuinfo))
    monkeypatch.setenv("HNSWLIB_BUILT_FOR", "x86-64-v3")
    instruction_set.check_hnswlib_build.cache_clear()
    with pytest.raises(InstructionSetError, match=r"built for x86-64-v3, and this CPU lacks abm, avx2") as caught:
        HnswIndex(8, IndexSettings())
    assert caught.value.reason is InstructionSetReason.MISSING_FLAGS

    monkeypatch.setenv("HNSWLIB_BUILT_FOR", "x86-64-v9")
    instruction_set.check_hnswlib_build.cache_clear()
    with pytest.raises(InstructionSetError) as caught:
        HnswIndex(8, IndexSettings())
    assert caught.value.reason is InstructionSetReason.UNKNOWN_LEVEL

    monkeypatch.delenv("HNSWLIB_BUILT_FOR")  # a portable build: nothing to check
    instruction_set.check_hnswlib_build.cache_clear()
    assert len(HnswIndex(8, IndexSettings())) == 0
    instruction_set.check_hnswlib_build.cache_clear()


def test_facestream_run_says_why_it_cannot_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if cpu_flags() is None:
        pytest.skip("no x86 /proc/cpuinfo to check against")
    monkeypatch.setenv("HNSWLIB_BUILT_FOR", "x86-64-v9")  # no CPU has it: refused as an unknown level
    instruction_set.check_hnswlib_build.cache_clear()
    try:
        assert main(["run", "--sample", "--cpu", "--out", str(tmp_path / "out")]) == EXIT_FAILED
    finally:
        instruction_set.check_hnswlib_build.cache_clear()
    assert "HNSWLIB_BUILT_FOR='x86-64-v9' is none of x86-64-v2, x86-64-v3, x86-64-v4" in caplog.text
