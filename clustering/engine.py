"""Online clustering: one face at a time, over an HNSW index, with approximate rank-order links.

A new face x queries its k nearest faces and enters the neighbour lists it belongs in. Then:
- x is linked to each neighbour at least ``direct_link`` similar;
- every mutual pair whose neighbour lists just changed (x's and the lists x entered) is linked when its
  approximate rank-order distance is at most ``threshold`` and its similarity reaches ``cosine_gate``.
A face of a track is must-linked to the track's previous embedded face, before any other link.
Links are applied most similar first through a union-find; a link that would put two faces of one frame, or
two tracks seen together in one frame, in one cluster is refused (a cannot-link wins over a must-link: the
track is split there, and its later faces follow the new part). A cluster that reaches ``template_faces`` faces,
or doubles after that, is then compared by template (clustering/joins.py) with the clusters of as many faces
near it, and joined to those at least ``template_link`` similar, under the same refusals. The oldest cluster
of a merge keeps its id (its first face's label). The state is written to the store, one atomic delta per
face, before the assignment is returned; a correction is one delta too, or one a step of a large erasure.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from clustering.clusters import Cluster
from clustering.corrections import Correction, CorrectionView, ForgetFaces, apply_correction
from clustering.erasure import erasure_steps
from clustering.events import CorrectionOutcome, FaceAssignment
from clustering.index import HnswIndex
from clustering.joins import Joins, TemplateSearch
from clustering.neighbour_search import NeighbourSearch
from clustering.rank_order import candidate_links, enter_all
from clustering.redis_state.compaction import restored_index
from clustering.restored_faces import RestoredFaces, restored_faces
from clustering.settings import ClusteringSettings
from clustering.store import (
    EMBEDDING_DTYPE,
    ClusterSummary,
    CorrectionDelta,
    FaceDelta,
    FaceMeta,
    InMemoryStore,
    StateStore,
    StoredState,
    tombstone,
)
from clustering.store_fence import StoreFence

log = logging.getLogger(__name__)


class OnlineRankOrder:
    def __init__(self, dimension: int, settings: ClusteringSettings, store: StateStore | None = None) -> None:
        self.dimension = dimension
        self.settings = settings
        self.params = settings.rank_order
        self.store: StateStore = store if store is not None else InMemoryStore()
        index = settings.index
        self._search = NeighbourSearch(HnswIndex(dimension, index), index.insert_block, index.insert_threads)
        self._adopt(RestoredFaces())  # none yet
        self._fence = StoreFence()
        self.refused_links = 0

    def _adopt(self, faces: RestoredFaces) -> None:
        """Takes these faces' state as its own (clustering/restored_faces.py says what each holds)."""
        self._ids, self._label_of, self._lists, self._sims = faces.ids, faces.label_of, faces.lists, faces.sims
        self._sets, self._clusters, self._links, self._marks = faces.sets, faces.clusters, faces.links, faces.marks
        self._commands, self._tombstones, self._track_anchor = faces.commands, faces.tombstones, faces.track_anchor

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def index(self) -> HnswIndex:
        """The HNSW index of the faces of whole insert blocks (what an index snapshot stores)."""
        return self._search.index

    def expect(self, faces: dict[str, NDArray[np.float32]]) -> None:
        """The faces (id -> embedding, in order) about to be added: their searches are made together (faces
        added before, or forgotten, are not searched: a replay after a restart is all repeats)."""
        self._search.expect(
            {
                face_id: self._rounded(vector)
                for face_id, vector in faces.items()
                if face_id not in self._label_of and not self._forgotten(face_id)
            }
        )

    def _forgotten(self, face_id: str) -> bool:
        """Whether ``face_id`` was forgotten (only its one-way tombstone is kept)."""
        return bool(self._tombstones) and tombstone(face_id) in self._tombstones

    def _rounded(self, embedding: NDArray[np.float32]) -> NDArray[np.float32]:
        # Rounded to the stored precision: the index holds what a restart will read back.
        return np.asarray(embedding, dtype=EMBEDDING_DTYPE).astype(np.float32).reshape(self.dimension)

    @property
    def cluster_count(self) -> int:
        return len(self._clusters)

    def cluster_of(self, face_id: str) -> int:
        return self._sets.find(self._label_of[face_id])

    def track_cluster(self, track: str) -> int | None:
        """The cluster of a track's latest embedded face; None for a track with no face clustered."""
        anchor = self._track_anchor.get(track)
        return None if anchor is None else self._sets.find(anchor)

    def nearest_clusters(self, embedding: NDArray[np.float32], k: int) -> list[tuple[ClusterSummary, float]]:
        """The ``k`` clusters nearest ``embedding`` (a unit vector), each with its best face's similarity."""
        found, similarities = self._search.search(self._rounded(embedding), max(self.params.direct_search, 10 * k))
        best: dict[int, float] = {}
        for label, similarity in zip(found, similarities, strict=True):
            root = self._sets.find(label)
            best[root] = max(best.get(root, -1.0), similarity)
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [(self._clusters[root].summary(root), similarity) for root, similarity in ranked]

    def labels(self) -> dict[str, int]:
        return {face_id: self._sets.find(i) for i, face_id in enumerate(self._ids) if face_id}

    def clusters(self) -> dict[int, ClusterSummary]:
        return {root: cluster.summary(root) for root, cluster in self._clusters.items()}

    def add(
        self,
        face_id: str,
        embedding: NDArray[np.float32],
        *,
        camera: str = "",
        frame: int | None = None,
        timestamp: float = 0.0,
        quality: float = 1.0,
        offset: tuple[int, int] | None = None,
        track: str | None = None,
        cooccurring: Sequence[str] = (),
        thumbnail: Callable[[], bytes | None] | None = None,
    ) -> FaceAssignment:
        """Clusters one unit-length embedding; a face id seen before changes nothing.

        ``frame``: faces of one camera's frame are different people. ``track``: faces of one track are one
        person, unless a cannot-link says otherwise. ``cooccurring``: tracks seen in this face's frame.
        ``thumbnail``: the face's picture for the store, asked for only when the face is one of its cluster's
        representatives (the faces a cluster shows; the store keeps pictures of those alone).
        """
        self._fence.check()
        if face_id in self._label_of:
            return FaceAssignment(face_id, self.cluster_of(face_id))
        if self._forgotten(face_id):
            return FaceAssignment(face_id, -1)  # a forgotten face, read again: it stays forgotten
        vector = self._rounded(embedding)
        x, candidates, candidate_sims, changed = self._insert(face_id, vector)
        frame_key = f"{camera}:{frame}" if frame is not None else None
        meta = FaceMeta(face_id, camera, frame_key, timestamp, quality, track, tuple(cooccurring), time.time())
        self._clusters[x] = Cluster(1, timestamp, timestamp, {camera} if camera else set(), [(quality, face_id)])
        self._clusters[x].note(meta)

        joins = Joins(x)
        links = self._links_of(x, (candidates, candidate_sims), changed, track)
        self.refused_links += joins.apply(links, self._sets, self._clusters, self.params)
        if joins.grown:  # a few times in a cluster's life: most faces pass here without a template search
            templates = TemplateSearch(self._search, self._sets, self._clusters, self._label_of, self.params)
            for root in sorted({self._sets.find(grown) for grown in joins.grown}):
                links = templates.links(self._sets.find(root))  # a template join before may have absorbed it
                self.refused_links += joins.apply(links, self._sets, self._clusters, self.params)

        if track:
            self._track_anchor[track] = x
        self._links.add(joins.links, str(x))
        root = self._sets.find(x)
        shown = thumbnail is not None and any(face == face_id for _, face in self._clusters[root].representatives)
        delta = FaceDelta(
            label=x,
            meta=meta,
            embedding=vector,
            neighbours={c: (tuple(self._lists[c]), tuple(self._sims[c])) for c in changed},
            parents=joins.parents,
            clusters={r: self._summary(r) for r in sorted(joins.touched)},
            offset=offset,
            cluster=root,
            merges=tuple(joins.merges),
            links=tuple(joins.links),
            thumbnail=thumbnail() if shown and thumbnail else None,
        )
        self._fence.write(f"face {face_id}", lambda: self.store.apply(delta))
        return FaceAssignment(face_id, delta.cluster, delta.merges)

    def _links_of(
        self, x: int, found: tuple[list[int], list[float]], changed: list[int], track: str | None
    ) -> list[tuple[float, int, int]]:
        """The links the new face x allows, in the order they are tried: its track's must-link, then the direct
        links to its ``found`` candidates and the rank-order links among the lists that ``changed``."""
        direct = {(y, x): s for y, s in zip(*found, strict=True) if s >= self.params.direct_link}
        anchor = self._track_anchor.get(track) if track else None
        return candidate_links(
            self._lists,
            self._sims,
            direct=direct,
            must={(anchor, x)} if anchor is not None else set(),
            changed=changed,
            find=self._sets.find,
            ids=self._ids,
            params=self.params,
        )

    def _summary(self, root: int) -> ClusterSummary | None:
        """The cluster's summary; None for one absorbed into another."""
        return self._clusters[root].summary(root) if root in self._clusters else None

    def _insert(self, face_id: str, vector: NDArray[np.float32]) -> tuple[int, list[int], list[float], list[int]]:
        """Adds a face to the search and to the neighbour lists it belongs in: its label, its candidates and
        their similarities (nearest first), and the faces whose lists changed (its own first)."""
        x = len(self._ids)
        k = self.params.k
        candidates, candidate_sims = self._search.nearest(face_id, vector, max(k, self.params.direct_search))
        self._search.add(x, vector)
        self._ids.append(face_id)
        self._label_of[face_id] = x
        self._sets.add()
        self._lists.append(array("i", candidates[:k]))
        self._sims.append(array("f", candidate_sims[:k]))
        changed = [x, *enter_all(self._lists, self._sims, x, (candidates, candidate_sims), k)]
        return x, candidates, candidate_sims, changed

    def correct(self, correction: Correction, offset: tuple[int, int] | None = None) -> CorrectionOutcome | None:
        """Applies a user's correction (clustering/corrections.py) and keeps obeying it; None for a command
        applied before. Raises CorrectionError, changing nothing, for a command that names what is not there."""
        outcomes = self.correct_in_steps(correction, offset)
        return outcomes[-1] if outcomes else None

    def correct_in_steps(
        self, correction: Correction, offset: tuple[int, int] | None = None
    ) -> list[CorrectionOutcome]:
        """``correct``, with the outcome of every step (a forget of many faces is applied, and written to the
        store, in steps: clustering/erasure.py); [] for a command applied before."""
        self._fence.check()
        if correction.command_id in self._commands:
            return []
        view = CorrectionView(
            self._sets,
            self._clusters,
            self._links,
            self._marks,
            self._ids,
            self._label_of,
            self.store.metas,
            self.store.labels_where,
            self._lists,
            self._sims,
        )
        steps = [correction]
        if isinstance(correction, ForgetFaces):
            steps = list(erasure_steps(view, correction, self.settings.erasure_step_faces))
        outcomes = []
        for step in steps:
            outcome, delta = apply_correction(view, step, self.params.representatives, offset)
            outcomes.append(outcome)
            self._applied(replace(delta, final=step is steps[-1]))
        return outcomes

    def _applied(self, delta: CorrectionDelta) -> None:
        """Takes a correction's delta into the search index and the store."""
        self._commands.add(delta.command_id)
        if delta.forgotten:
            self._search.forget(delta.forgotten)
            self._tombstones.update(tombstone(face_id) for face_id in delta.forgotten.values())
            self._track_anchor = {t: a for t, a in self._track_anchor.items() if a not in delta.forgotten}
        self._fence.write(f"correction {delta.command_id}", lambda: self.store.apply_correction(delta))

    @classmethod
    def restore(
        cls, store: StateStore, dimension: int, settings: ClusteringSettings, state: StoredState | None = None
    ) -> OnlineRankOrder:
        """An engine rebuilt from its store (or from ``state``, loaded from it): the index from the snapshot
        plus the faces applied after it (clustering/redis_state/compaction.py stores the snapshots)."""
        state = store.load() if state is None else state
        engine = cls(dimension, settings, store)
        # The index is built beside the rest: hnswlib's inserts leave the GIL to this thread's Python work.
        with ThreadPoolExecutor(1, thread_name_prefix="restore-index") as pool:
            index = pool.submit(restored_index, state, dimension, settings.index)
            engine._adopt(restored_faces(state))
            engine._search = index.result()
        log.info(
            "restored %d faces in %d clusters (index snapshot covered %d)",
            len(engine),
            len(engine._clusters),
            state.snapshot_count if state.snapshot is not None else 0,
        )
        return engine
