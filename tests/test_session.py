import logging
from pathlib import Path
from typing import Any

import pytest

from models.errors import ModelError
from models.registry import REGISTRY, builtin_path
from models.session import PROVIDER_PREFERENCE, OrtSessionFactory, choose_providers


def test_our_order_wins_over_what_onnxruntime_lists() -> None:
    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider"]
    assert choose_providers(PROVIDER_PREFERENCE, available) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_tensorrt_first_when_present() -> None:
    available = ["CPUExecutionProvider", "TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert choose_providers(PROVIDER_PREFERENCE, available)[0] == "TensorrtExecutionProvider"


def test_nothing_usable_is_an_error_naming_both_lists() -> None:
    with pytest.raises(ModelError, match=r"CUDAExecutionProvider.*offers \['CPUExecutionProvider'\]"):
        choose_providers(("CUDAExecutionProvider",), ["CPUExecutionProvider"])


def test_the_factory_logs_its_choice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="models.session")
    session = OrtSessionFactory(intra_op_threads=1)(builtin_path(REGISTRY["arcface-w600k-mbf"], tmp_path))
    assert session.get_providers()[-1] == "CPUExecutionProvider"
    assert "with providers ['CPUExecutionProvider']" in caplog.text


def test_a_broken_file_fails_with_its_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00" * 10)
    with pytest.raises(ModelError, match=r"broken\.onnx"):
        OrtSessionFactory()(broken)


def _spinning(session: Any) -> str:  # onnxruntime's own session: the protocol names only what inference uses
    return str(session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning"))


def test_onnxruntime_threads_sleep_when_idle_unless_asked_to_spin(tmp_path: Path) -> None:
    model = builtin_path(REGISTRY["arcface-w600k-mbf"], tmp_path)
    assert _spinning(OrtSessionFactory()(model)) == "0"
    assert _spinning(OrtSessionFactory(spin_wait=True)(model)) == "1"
