"""Approximate rank-order distance (Otto, Wang, Jain, TPAMI 2018) and the batch clustering built on it.

With O_a(b) the rank of b in a's top-k list (1 for the nearest), d(a, b) counts a's neighbours ranked before
b that are absent from b's list, and D(a, b) = (d(a, b) + d(b, a)) / min(O_a(b), O_b(a)), defined for mutual
neighbours only. Two faces are linked when D <= threshold and their cosine similarity reaches the gate (on
ArcFace embeddings rank-order alone links faces that have no true match, since every face has neighbours),
or when they are neighbours at least ``direct_link`` similar.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from clustering.settings import RankOrderSettings
from clustering.union_find import UnionFind


def rank_order_distance(a: int, list_a: Sequence[int], b: int, list_b: Sequence[int]) -> float | None:
    """D(a, b) for two neighbour lists (nearest first, without the face itself); None unless mutual."""
    try:
        rank_ab = list_a.index(b)
        rank_ba = list_b.index(a)
    except ValueError:
        return None
    members_b, members_a = set(list_b), set(list_a)
    d_ab = sum(1 for x in list_a[:rank_ab] if x not in members_b)
    d_ba = sum(1 for x in list_b[:rank_ba] if x not in members_a)
    return (d_ab + d_ba) / (min(rank_ab, rank_ba) + 1)


#: Sorts before any similarity: a must-link (a track's) is tried first.
MUST_LINK = 2.0


def enter(members: array[int], sims: array[float], x: int, similarity: float, k: int) -> bool:
    """Puts x into a neighbour list (most similar first, at most k) if it belongs there; True when it changed."""
    if len(members) >= k and similarity <= sims[-1]:
        return False
    position = len(sims)
    while position > 0 and sims[position - 1] < similarity:
        position -= 1
    members.insert(position, x)
    sims.insert(position, similarity)
    if len(members) > k:
        members.pop()
        sims.pop()
    return True


def enter_all(
    lists: Sequence[array[int]], sims: Sequence[array[float]], x: int, found: tuple[list[int], list[float]], k: int
) -> list[int]:
    """Puts the new face x into its candidates' lists where it belongs; the candidates whose list changed."""
    changed = []
    for y, similarity in zip(*found, strict=True):
        # Most of the 50 candidates' lists are full of nearer faces: test that before calling enter.
        if (len(sims[y]) < k or similarity > sims[y][-1]) and enter(lists[y], sims[y], x, similarity, k):
            changed.append(y)
    return changed


def candidate_links(
    lists: Sequence[array[int]],
    sims: Sequence[array[float]],
    *,
    direct: dict[tuple[int, int], float],
    must: set[tuple[int, int]],
    changed: list[int],
    find: Callable[[int], int],
    ids: Sequence[str],
    params: RankOrderSettings,
) -> list[tuple[float, int, int]]:
    """(-similarity, a, b) of the links a new face allows, its must-links first, then most similar: the direct
    ones, and the rank-order ones among the lists that changed (between faces not yet together; an empty id
    is a forgotten face)."""
    links = dict(direct)
    links.update(dict.fromkeys(must, MUST_LINK))
    for c in changed:
        list_c = lists[c]
        root_c = find(c)  # links are only collected here, so c's cluster stays the same through its list
        for z, similarity in zip(list_c, sims[c], strict=True):
            if similarity < params.cosine_gate:
                break  # lists are sorted: no later neighbour passes the gate
            pair = (min(c, z), max(c, z))
            if pair in links or root_c == find(z) or not ids[z]:
                continue
            distance = rank_order_distance(c, list_c, z, lists[z])
            if distance is not None and distance <= params.threshold:
                links[pair] = similarity
    return sorted((-s, a, b) for (a, b), s in links.items())


def exact_neighbours(
    embeddings: NDArray[np.float32], k: int, block: int = 1024
) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's k most similar other rows, nearest first (ties by row number), by brute force."""
    n = len(embeddings)
    k = min(k, n - 1)
    lists: list[list[int]] = []
    sims: list[list[float]] = []
    for start in range(0, n, block):
        similarity = embeddings[start : start + block] @ embeddings.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, rows + start] = -np.inf
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), np.intp)
        for row, candidates in zip(similarity, top, strict=True):
            order = candidates[np.lexsort((candidates, -row[candidates]))]
            lists.append(order.tolist())
            sims.append(row[order].tolist())
    return lists, sims


def link_candidates(
    lists: Sequence[Sequence[int]],
    sims: Sequence[Sequence[float]],
    params: RankOrderSettings,
) -> list[tuple[float, int, int]]:
    """(-cosine, a, b) of every pair the rule links, most similar first (the online engine's order).

    ``lists`` may be longer than k: direct links are searched among the first ``direct_search``.
    """
    links: dict[tuple[int, int], float] = {}
    k = params.k
    for a, (list_a, sims_a) in enumerate(zip(lists, sims, strict=True)):
        for rank, (b, cosine) in enumerate(zip(list_a, sims_a, strict=True)):
            pair = (min(a, b), max(a, b))
            if pair in links or cosine < params.cosine_gate:
                continue
            if cosine >= params.direct_link and rank < params.direct_search:
                links[pair] = cosine
                continue
            if rank >= k:
                continue
            distance = rank_order_distance(a, list_a[:k], b, lists[b][:k])
            if distance is not None and distance <= params.threshold:
                links[pair] = cosine
    return sorted((-cosine, a, b) for (a, b), cosine in links.items())


def batch_rank_order(
    embeddings: NDArray[np.float32],
    params: RankOrderSettings,
    cannot_link: Sequence[str | None] | None = None,
) -> NDArray[np.int64]:
    """The online rule applied to all faces at once, over exact neighbour lists: the yardstick.

    Links are applied most similar first, refusing any that would join two faces of one frame.
    """
    lists, sims = exact_neighbours(embeddings, max(params.k, params.direct_search))
    sets = UnionFind()
    frames: list[set[str]] = []
    for i in range(len(embeddings)):
        sets.add()
        key = cannot_link[i] if cannot_link is not None else None
        frames.append({key} if key is not None else set())
    for _, a, b in link_candidates(lists, sims, params):
        root_a, root_b = sets.find(a), sets.find(b)
        if root_a == root_b or not frames[root_a].isdisjoint(frames[root_b]):
            continue
        joined = sets.union(root_a, root_b)
        if joined is None:  # one cluster already (found above; kept for the type)
            continue
        survivor, absorbed = joined
        frames[survivor] |= frames[absorbed]
        frames[absorbed] = set()
    return np.asarray([sets.find(i) for i in range(len(embeddings))], np.int64)
