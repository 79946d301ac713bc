"""docs/configuration.md, generated from the settings model (a test fails when the two drift apart).

uv run python -m workers.config_reference > docs/configuration.md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from workers.settings import Settings

HEADER = """# Configuration reference

Generated from `workers/settings.py` by `uv run python -m workers.config_reference > docs/configuration.md`;
`tests/test_config_reference.py` fails when this page and the settings model differ.

Every setting is read from an environment variable `FACESTREAM_` + the path in capitals with `__` between
levels; command-line flags override them. Values are validated at start-up (a bad one ends the command with
exit status 2 and the reason); the tree is frozen afterwards. Lists and mappings take JSON, e.g.
`FACESTREAM_MODELS__RUNTIME__PROVIDERS='["CPUExecutionProvider"]'`,
`FACESTREAM_KAFKA__CLIENT='{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}'`.
"""


_BOUNDS = (
    ("gt", ">"),
    ("ge", ">="),
    ("lt", "<"),
    ("le", "<="),
    ("min_length", "length >="),
    ("max_length", "length <="),
)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value).replace(str(Path.home()), "~")
    if isinstance(value, tuple):
        value = list(value)
    return "`" + json.dumps(value, default=str) + "`"


def _rows(model: type[BaseModel], path: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, (*path, name))
            continue
        variable = "FACESTREAM_" + "__".join(part.upper() for part in (*path, name))
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        bounds = [
            f"{symbol} {getattr(rule, name)}"
            for rule in field.metadata
            for name, symbol in _BOUNDS
            if hasattr(rule, name)
        ]
        if bounds:
            description += f" ({', '.join(bounds)})"
        yield variable, _default(field), description.strip()


def reference_markdown() -> str:
    lines = [HEADER]
    section = None
    for variable, default, description in _rows(Settings, ()):
        group = variable.split("__")[0].removeprefix("FACESTREAM_").lower()
        if group != section:
            section = group
            lines += [f"\n## {group}\n", "| variable | default | what |", "|---|---|---|"]
        lines.append(f"| `{variable}` | {default} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
