"""The root of every error the streaming room raises (bad bytes, bad contracts, sources that fail): a caller
catches ``StreamingError`` to tell them from everything else; each error also keeps the built-in base its
callers have caught all along (``ValueError`` for bad input, ``RuntimeError`` for a source that failed)."""


class StreamingError(Exception):
    """Input that could not be read or a source that could not be read from, with its reason."""
