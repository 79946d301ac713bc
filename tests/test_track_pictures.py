"""The pictures a space's writer holds for open tracks: the best face's is there when the appearance comes, and
what is held stays bounded however many tracks never report."""

from __future__ import annotations

from workers.cluster.track_pictures import TrackPictures


def test_an_appearance_takes_its_best_face_s_picture_and_lets_the_others_go() -> None:
    held = TrackPictures()
    for face in ("door:1:0", "door:2:0", "door:3:0"):
        held.keep("door:t1", face, face.encode(), 0.5)
    assert held.take("door:t1", "door:2:0") == b"door:2:0"
    assert held.take("door:t1", "door:3:0") is None  # the track's next appearance has faces of its own


def test_pictures_are_held_for_a_bounded_number_of_tracks_and_faces() -> None:
    held = TrackPictures(max_tracks=3, max_per_track=2)
    for track in range(5):  # tracks that never report: the least recently seen go first
        held.keep(f"t{track}", f"f{track}", b"x", 0.5)
    assert held.take("t0", "f0") is None
    assert held.take("t4", "f4") == b"x"
    # A long track keeps its best-ranked faces, so that its best face's picture is there whenever it was seen.
    for face, rank in enumerate((0.9, 0.2, 0.3, 0.1)):
        held.keep("long", f"f{face}", str(face).encode(), rank)
    assert held.take("long", "f0") == b"0"
    for face, rank in enumerate((0.9, 0.2, 0.3, 0.1)):
        held.keep("long", f"f{face}", str(face).encode(), rank)
    assert held.take("long", "f1") is None  # ranked below the two kept
