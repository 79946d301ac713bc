"""Records that broke a stage in a way no contract check foresaw: remembered, so that the stage dead-letters
them when it reads them again instead of failing on them forever."""

from __future__ import annotations

from workers.errors import WorkerError


class PoisonRecordError(WorkerError):
    """Applying one record failed unexpectedly (a bug it triggers): the state may hold half of it, so the stage
    steps down and rebuilds it, and dead-letters that record when it comes again."""

    def __init__(self, partition: int, offset: int, cause: Exception) -> None:
        super().__init__(f"the record at {partition}@{offset} failed: {type(cause).__name__}: {cause}")
        self.at = (partition, offset)
        self.cause = cause


class PoisonedRecords:
    """(partition, offset) -> the error it raised, for the records of one topic this process saw fail."""

    def __init__(self) -> None:
        self._errors: dict[tuple[int, int], Exception] = {}

    def add(self, error: PoisonRecordError) -> None:
        self._errors[error.at] = error.cause

    def error_of(self, at: tuple[int, int]) -> Exception | None:
        return self._errors.get(at)
