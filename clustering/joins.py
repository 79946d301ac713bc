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

from clustering.clusters import Cluster
from clustering.events import Merge
from clustering.neighbour_search import NeighbourSearch
from clustering.packed import Link
from clustering.settings import RankOrderSettings
from clustering.union_find import UnionFind

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

    def apply(
        self,
        links: Sequence[tuple[float, int, int]],
        sets: UnionFind,
        clusters: dict[int, Cluster],
        params: RankOrderSettings,
    ) -> int:
        """Applies ``links`` (-similarity, a, b) in order and notes what changed; refuses, and counts, those
        that would join faces known to be of different people."""
        refused = 0
        for negative_similarity, a, b in links:
            root_a, root_b = sets.find(a), sets.find(b)
            if root_a == root_b:
                continue
            if clusters[root_a].conflicts(clusters[root_b]):
                refused += 1
                continue
            sizes = clusters[root_a].size, clusters[root_b].size
            joined = sets.union(root_a, root_b)
            if joined is None:  # one cluster already (found above; kept for the type)
                continue
            survivor, absorbed = joined
            clusters[survivor].absorb(clusters.pop(absorbed), params.representatives)
            self.parents[absorbed] = survivor
            self.links.append((a, b, -negative_similarity))
            self.touched |= {survivor, absorbed}
            if absorbed != self.face:
                self.merges.append(Merge(survivor, (absorbed,)))
            if template_due(max(sizes), sum(sizes), params.template_faces):
                self.grown.add(survivor)
        return refused


def template_due(before: int, after: int, template_faces: int) -> bool:
    """Whether a cluster that grew from ``before`` (its larger part) to ``after`` faces is due a template
    comparison: on reaching ``template_faces``, then each time it doubles (a few times in a cluster's life)."""
    if not template_faces or after < template_faces:
        return False
    return before < template_faces or after.bit_length() > before.bit_length()


@dataclass(frozen=True)
class TemplateSearch:
    """The clusters a cluster's template finds, over an engine's state as it is now."""

    search: NeighbourSearch
    sets: UnionFind
    clusters: dict[int, Cluster]
    label_of: dict[str, int]
    params: RankOrderSettings

    def links(self, root: int) -> list[tuple[float, int, int]]:
        """(-cosine, a, b) joining the cluster ``root`` to each cluster of at least ``template_faces`` faces
        whose template is at least ``template_link`` similar to its own, most similar first."""
        template = self.template(root)
        found, _ = self.search.search(template, self.params.direct_search)
        compared = {root}
        links = []
        for label in found:
            other = self.sets.find(label)
            if other in compared or self.clusters[other].size < self.params.template_faces:
                continue
            compared.add(other)
            similarity = float(template @ self.template(other))
            if similarity >= self.params.template_link:
                links.append((-similarity, root, label))
        return sorted(links)

    def template(self, root: int) -> NDArray[np.float32]:
        """The unit, quality-weighted mean of a cluster's representatives."""
        representatives = self.clusters[root].representatives
        kept = [(quality, self.label_of[face]) for quality, face in representatives if face in self.label_of]
        if not kept:  # every representative forgotten: nothing to compare
            return np.zeros(self.search.index.dimension, np.float32)
        return unit_mean(self.search.vectors([label for _, label in kept]), [quality for quality, _ in kept])


def unit_mean(vectors: NDArray[np.float32], qualities: Sequence[float]) -> NDArray[np.float32]:
    """The unit mean of ``vectors`` (unit rows), each weighted by its quality."""
    weights = np.maximum(np.asarray(qualities, np.float32), MIN_WEIGHT)
    mean = (weights @ vectors).astype(np.float32)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean
