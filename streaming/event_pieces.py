"""Correction events cut to fit a record. A split or an erasure lists every face of the clusters it touched,
and one of a 45,000-face cluster is more than a Kafka record holds: it becomes pieces (``piece`` i of
``pieces``), each a valid event about the faces it lists, produced in order in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator

from streaming.commands import ForgottenEvent, SplitEvent, SplitPart
from streaming.messages import _Message

#: JSON a part's opening and a list's separators may add around one face id, beyond the id itself.
_PART_BYTES = 40


def fitted_events(event: _Message, max_bytes: int) -> list[_Message]:
    """``event`` when its JSON fits ``max_bytes``, else its pieces, each of which does."""
    if len(event.to_json()) <= max_bytes:
        return [event]
    if isinstance(event, SplitEvent):
        return _split_pieces(event, max_bytes)
    if isinstance(event, ForgottenEvent):
        return _forgotten_pieces(event, max_bytes)
    raise ValueError(f"a {type(event).__name__} of {len(event.to_json())} bytes cannot be cut to {max_bytes}")


def _split_pieces(event: SplitEvent, max_bytes: int) -> list[_Message]:
    empty = event.model_copy(update={"parts": [], "piece": 1_000_000, "pieces": 1_000_000})
    room = max_bytes - len(empty.to_json())
    members = [(part.cluster, face) for part in event.parts for face in part.faces]
    chunks = list(_chunks(members, room))
    return [
        event.model_copy(update={"parts": _parts(chunk), "piece": n, "pieces": len(chunks)})
        for n, chunk in enumerate(chunks, start=1)
    ]


def _forgotten_pieces(event: ForgottenEvent, max_bytes: int) -> list[_Message]:
    """Erased faces first, then the parts' faces, then the removed clusters (-1 marks an erased face)."""
    empty = event.model_copy(update={"faces": [], "parts": [], "removed": [], "piece": 1_000_000, "pieces": 1_000_000})
    room = max_bytes - len(empty.to_json())
    entries = [(-1, face) for face in event.faces]
    entries += [(part.cluster, face) for part in event.parts for face in part.faces]
    entries += [(cluster, "") for cluster in event.removed]
    removed = set(event.removed)
    chunks = list(_chunks(entries, room))
    pieces: list[_Message] = []
    for n, chunk in enumerate(chunks, start=1):
        members = [(cluster, face) for cluster, face in chunk if cluster >= 0 and face]
        update = {
            "faces": [face for cluster, face in chunk if cluster < 0],
            "parts": _parts(members),
            "removed": [cluster for cluster, face in chunk if not face and cluster in removed],
            "piece": n,
            "pieces": len(chunks),
        }
        pieces.append(event.model_copy(update=update))
    return pieces


def _chunks(entries: list[tuple[int, str]], room: int) -> Iterator[list[tuple[int, str]]]:
    """Consecutive runs of ``entries`` whose JSON, counted generously, stays within ``room`` bytes."""
    chunk: list[tuple[int, str]] = []
    used = 0
    for entry in entries:
        cost = len(json.dumps(entry[1])) + len(str(entry[0])) + _PART_BYTES
        if cost > room:
            raise ValueError(f"one face id of {len(entry[1])} characters does not fit a record of {room} bytes")
        if chunk and used + cost > room:
            yield chunk
            chunk, used = [], 0
        chunk.append(entry)
        used += cost
    if chunk:
        yield chunk


def _parts(members: list[tuple[int, str]]) -> list[SplitPart]:
    parts: dict[int, list[str]] = {}
    for cluster, face in members:
        parts.setdefault(cluster, []).append(face)
    return [SplitPart(cluster=cluster, faces=faces) for cluster, faces in parts.items()]
