"""The base of every part of the one config tree and of every message contract: immutable once validated, and
a field it does not know is an error (a misspelt setting fails at start instead of being ignored)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
