"""The root of every error the clustering raises: a caller that wants to tell the clustering's failures from
everything else catches ``ClusteringError``; each error also keeps the built-in base its callers have caught
all along (``ValueError`` for what the input asked, ``RuntimeError`` for what the state or the host did)."""


class ClusteringError(Exception):
    """Something the clustering could not do, with what an operator or a caller needs to act on it."""
