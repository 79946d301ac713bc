"""What one new face's links changed, and the pure parts of comparing clusters by template.

A template is the unit, quality-weighted mean of a cluster's representatives (its best faces): set-based
recognition's estimate of one person, steadier than any face. Two pieces of one person whose faces each stay
under the rank-order gates (a track seen once, a shot after a cut) are often well over them as templates:
on LFW, two templates of three photos of one person are at least 0.62 similar for 99% of people, while no
two people's of three or five photos reached 0.45 (bench/templates.py; README, "Pieces joined by template").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from clustering.events import Merge
from clustering.packed import Link

#: The weight of a face of quality 0: it still counts, a little.
MIN_WEIGHT = 1e-3


@dataclass
class Joins:
    """What the links a new face allowed changed: its own label, the absorbed clusters' survivors, the roots
    touched, the merges of clusters other than the face's own, the links applied, and the clusters that reached
    a size due a template comparison."""

    face: int
    parents: dict[int, int] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)
    merges: list[Merge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    grown: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.touched.add(self.face)


def template_due(before: int, after: int, template_faces: int) -> bool:
    """Whether a cluster that grew from ``before`` (its larger part) to ``after`` faces is due a template
    comparison: on reaching ``template_faces``, then each time it doubles (a few times in a cluster's life)."""
    if not template_faces or after < template_faces:
        return False
    return before < template_faces or after.bit_length() > before.bit_length()


def unit_mean(vectors: NDArray[np.float32], qualities: Sequence[float]) -> NDArray[np.float32]:
    """The unit mean of ``vectors`` (unit rows), each weighted by its quality."""
    weights = np.maximum(np.asarray(qualities, np.float32), MIN_WEIGHT)
    mean = (weights @ vectors).astype(np.float32)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean
