"""The root of every error the workers raise (a request refused, a lease lost, a record that killed workers):
a caller catches ``WorkerError`` to tell them from everything else; each error also keeps the built-in base
its callers have caught all along."""


class WorkerError(Exception):
    """Something a worker process refused or could not do, with what an operator needs to act on it."""
