"""Log lines an operator's pipeline can parse: one JSON object per line, message coordinates as fields."""

from __future__ import annotations

import json
import logging

import pytest

from workers.plumbing.logs import configure_logging


def test_json_lines_carry_topic_partition_and_offset(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        configure_logging(log_format="json")
        configure_logging(log_format="json")  # configuring twice replaces the handler, it does not add one
        logging.getLogger("workers.test").warning(
            "dead letter %s", "frames[2]@41", extra={"topic": "frames", "partition": 2, "offset": 41}
        )
        (line,) = capsys.readouterr().err.strip().splitlines()
        record = json.loads(line)
        assert record["level"] == "WARNING"
        assert record["logger"] == "workers.test"
        assert record["message"] == "dead letter frames[2]@41"
        assert (record["topic"], record["partition"], record["offset"]) == ("frames", 2, 41)
    finally:
        configure_logging()
