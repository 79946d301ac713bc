"""Neighbour lists and union links as the stores keep them: little-endian int32 labels, then float32
similarities."""

from __future__ import annotations

import sys
from array import array

import numpy as np

#: A face's neighbour list: its neighbours' labels and their similarities, most similar first.
Neighbours = tuple[tuple[int, ...], tuple[float, ...]]
#: A union's link: (face label, face label, similarity); a must-link (a track's, a merge's) has similarity 2.
Link = tuple[int, int, float]

if array("i").itemsize != 4 or array("f").itemsize != 4:
    raise ImportError("neighbour lists are packed as 4-byte numbers: this platform's C int or float is not")


def pack_links(links: tuple[Link, ...]) -> bytes:
    """Links as little-endian int32 pairs then float32 similarities."""
    pairs = np.asarray([(a, b) for a, b, _ in links], "<i4").reshape(-1)
    return pairs.tobytes() + np.asarray([s for _, _, s in links], "<f4").tobytes()


def unpack_links(data: bytes) -> list[Link]:
    count = len(data) // 12
    pairs = np.frombuffer(data[: 8 * count], "<i4").reshape(-1, 2).tolist()
    similarities = np.frombuffer(data[8 * count :], "<f4").tolist()
    return [(a, b, s) for (a, b), s in zip(pairs, similarities, strict=True)]


def pack_neighbours(neighbours: Neighbours) -> bytes:
    """A neighbour list as little-endian int32 labels then float32 similarities."""
    members, sims = neighbours
    # The array module packs ten numbers in half numpy's time, and nine lists change per face.
    packed = array("i", members), array("f", sims)
    if sys.byteorder != "little":
        for part in packed:
            part.byteswap()
    return packed[0].tobytes() + packed[1].tobytes()


def unpack_neighbours(data: bytes) -> Neighbours:
    half = len(data) // 2
    return tuple(np.frombuffer(data[:half], "<i4").tolist()), tuple(np.frombuffer(data[half:], "<f4").tolist())
