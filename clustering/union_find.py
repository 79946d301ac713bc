"""Union-find over dense integer ids, with the smallest id of a set as its root."""

from __future__ import annotations

from array import array


class UnionFind:
    def __init__(self) -> None:
        # 4 bytes an item, where a list holds an 8-byte pointer to a 28-byte int; and numpy reads it in place.
        self._parent = array("i")

    @classmethod
    def from_parents(cls, count: int, parents: dict[int, int]) -> UnionFind:
        """Sets over ``count`` items with the given parent pointers (items absent are roots)."""
        sets = cls()
        sets._parent = array("i", [parents.get(i, i) for i in range(count)])
        return sets

    def parents(self) -> array[int]:
        """The parent of every item (roots are their own), read-only by contract."""
        return self._parent

    def regroup(self, group: list[int]) -> None:
        """Makes ``group``'s smallest item the root of all of it (a correction recomputed the group)."""
        root = min(group)
        for item in group:
            self._parent[item] = root

    def __len__(self) -> int:
        return len(self._parent)

    def add(self) -> int:
        self._parent.append(len(self._parent))
        return len(self._parent) - 1

    def find(self, item: int) -> int:
        parent = self._parent
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:  # path compression
            parent[item], item = root, parent[item]
        return root

    def union(self, a: int, b: int) -> tuple[int, int] | None:
        """Joins the sets of a and b; returns (survivor, absorbed) roots, or None if already joined.

        The older set (smaller root) always survives, so cluster ids stay stable as clusters grow.
        """
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return None
        survivor, absorbed = min(root_a, root_b), max(root_a, root_b)
        self._parent[absorbed] = survivor
        return survivor, absorbed
