"""Where the embed worker commits: never past a frame whose appearance is still open."""

from __future__ import annotations

from workers.embed.commit_points import METADATA_MAX_BYTES, CommitPoints, format_metadata, parse_metadata


def _points(open_tracks: dict[str, int | None]) -> CommitPoints:
    points = CommitPoints("frames")
    points.assigned(0, None)
    for camera in open_tracks:
        points.seen(0, camera, "default")
    points.delivered(0, 100)
    return points


def test_a_partition_commits_at_its_oldest_open_appearance_and_the_others_resume_later() -> None:
    open_tracks: dict[str, int | None] = {"lobby": 40, "door": 70, "yard": None}
    [commit] = _points(open_tracks).to_commit(open_tracks.get)
    assert commit.offset == 40
    # The next owner replays the lobby from 40; the door from its own open track; the yard had nothing open.
    assert parse_metadata(commit.metadata) == {"door": 70, "yard": 100}


def test_a_partition_with_no_open_track_commits_where_it_was_consumed() -> None:
    [commit] = _points({"lobby": None}).to_commit(lambda _: None)
    assert (commit.offset, commit.metadata) == (100, "")


def test_the_next_owner_skips_what_a_former_owner_reported_and_keeps_that_promise() -> None:
    points = CommitPoints("frames")
    points.assigned(0, '{"resume":{"door":70}}')
    assert points.reported_before(0, "door", 69)
    assert not points.reported_before(0, "door", 70)
    assert not points.reported_before(0, "lobby", 41)
    points.seen(0, "door", "default")
    points.seen(0, "lobby", "default")
    points.delivered(0, 60)  # the door's frames so far were skipped; the lobby has a track open since 45
    [commit] = points.to_commit({"lobby": 45, "door": None}.get)
    assert commit.offset == 45
    assert parse_metadata(commit.metadata) == {"door": 70}  # still owed to the former owner's report


def test_a_commit_never_goes_back_and_an_unchanged_one_is_not_sent_again() -> None:
    points = _points({"lobby": None})
    first = points.to_commit(lambda _: None)
    assert points.to_commit(lambda _: None) == first  # not accepted by Kafka yet: offered again
    points.committed(first)
    assert points.to_commit(lambda _: None) == []
    points.delivered(0, 120)
    assert points.to_commit(lambda _: 90) == []  # a track that began before the last commit cannot pull it back
    [commit] = points.to_commit(lambda _: 110)
    assert commit.offset == 110
    points.committed([commit])


def test_metadata_stays_within_kafkas_limit_keeping_the_latest_resume_points() -> None:
    resume = {f"camera-{n:04d}": 1_000 + n for n in range(1_000)}
    metadata = format_metadata(resume)
    assert len(metadata.encode()) <= METADATA_MAX_BYTES
    kept = parse_metadata(metadata)
    assert kept
    assert all(offset > 1_000 + 1_000 - len(kept) - 1 for offset in kept.values())


def test_foreign_metadata_means_replay_everything() -> None:
    assert parse_metadata("not json") == {}
    assert parse_metadata('["a list"]') == {}
