"""The base of every part of the one config tree and of every message contract: immutable once validated, and
a field it does not know is an error (a misspelt setting fails at start instead of being ignored). Errors never
echo the input: a misspelt password setting must not print the password, nor a bad record its embedding."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
