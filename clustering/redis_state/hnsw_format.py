"""hnswlib's saved index without its copy of the vectors, and back: the graph alone is a tenth of the size.

An hnswlib file (``saveIndex``) is a 96-byte header, then one fixed-size record per element (its level-0 links,
its vector as float32, its label), then the upper-level links. The vectors are also in the state store, so a
stored snapshot leaves them out and a restore puts them back, normalised as hnswlib's cosine space stores them.
Pure numpy on the bytes; the header's fields are read, never assumed.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from clustering.errors import ClusteringError

#: offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset, offsetData,
#: maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_MAGIC = b"FSHNSW1\x00"  # a graph without vectors, as this module writes it


class SnapshotFormatError(ClusteringError, ValueError):
    """Bytes that are not an hnswlib index of the expected shape."""


def _header(data: bytes | mmap.mmap) -> tuple[int, int, int, int]:
    """(element count, bytes per element, offset of the vector, offset of the label) of an hnswlib file."""
    if len(data) < _HEADER.size:
        raise SnapshotFormatError(f"an hnswlib index has a {_HEADER.size}-byte header; got {len(data)} bytes")
    fields = _HEADER.unpack_from(data)
    count, size, label_offset, data_offset = fields[2], fields[3], fields[4], fields[5]
    if not 0 <= data_offset < label_offset < size or len(data) < _HEADER.size + count * size:
        raise SnapshotFormatError("the hnswlib header does not describe the bytes that follow it")
    return count, size, data_offset, label_offset


def strip_vectors(index: bytes | mmap.mmap, dimension: int) -> bytes:
    """The saved index (its bytes, or the file mapped) without its float32 vectors (put them back with
    ``write_with_vectors``)."""
    count, size, data_offset, label_offset = _header(index)
    width = dimension * 4
    if label_offset - data_offset != width:
        raise SnapshotFormatError(f"the index holds vectors of {label_offset - data_offset} bytes, not {width}")
    body = _HEADER.size + count * size
    records = np.frombuffer(index, np.uint8, count * size, _HEADER.size).reshape(count, size)
    kept = np.concatenate([records[:, :data_offset], records[:, data_offset + width :]], axis=1)
    return _MAGIC + index[: _HEADER.size] + kept.tobytes() + index[body:]


def write_with_vectors(
    graph: bytes, vectors: Sequence[NDArray[np.float32]], dimension: int, out: BinaryIO, chunk: int = 20_000
) -> None:
    """Writes the saved index ``strip_vectors`` took apart to ``out``, with ``vectors[label]`` put back for each
    element (an empty vector, a forgotten face's stand-in, as zeros), ``chunk`` elements at a time: a
    million-face index is 2 GB, and no whole copy of it is ever made in memory."""
    if not graph.startswith(_MAGIC):
        raise SnapshotFormatError("not a graph written by strip_vectors")
    index = memoryview(graph)[len(_MAGIC) :]
    width = dimension * 4
    count, size, data_offset, label_offset = _header_of_stripped(index, width)
    stripped = size - width
    records = np.frombuffer(index, np.uint8, count * stripped, _HEADER.size).reshape(count, stripped)
    labels = records[:, label_offset - width : label_offset - width + 8].copy().view("<u8").ravel()
    if count and int(labels.max()) >= len(vectors):
        raise SnapshotFormatError(f"the graph names label {int(labels.max())}; only {len(vectors)} vectors given")
    zeros = np.zeros(dimension, np.float32)
    out.write(index[: _HEADER.size])
    for first in range(0, count, chunk):
        rows = records[first : first + chunk]
        chosen = np.stack([v if v.size else zeros for v in (vectors[label] for label in labels[first : first + chunk])])
        # As hnswlib's cosine space stores a vector: times 1 / (its norm + 1e-30), in float32.
        norms = np.sqrt(np.einsum("ij,ij->i", chosen, chosen, dtype=np.float64))
        normalised = (chosen * (1.0 / (norms + 1e-30)).astype(np.float32)[:, None]).astype("<f4")
        full = np.concatenate([rows[:, :data_offset], normalised.view(np.uint8), rows[:, data_offset:]], axis=1)
        out.write(full.data)
    out.write(index[_HEADER.size + count * stripped :])


def _header_of_stripped(index: memoryview, width: int) -> tuple[int, int, int, int]:
    """The header fields of a stripped index: the records are ``width`` bytes shorter than it says."""
    if len(index) < _HEADER.size:
        raise SnapshotFormatError("a stripped graph shorter than its header")
    fields = _HEADER.unpack_from(index)
    count, size, label_offset, data_offset = fields[2], fields[3], fields[4], fields[5]
    if label_offset - data_offset != width or len(index) < _HEADER.size + count * (size - width):
        raise SnapshotFormatError("the graph's header does not match its records or the vectors given")
    return count, size, data_offset, label_offset
