"""The pictures of the faces of open tracks, held by a space's writer until the track's appearance says which of
them is its best face (the one picture its timeline keeps). In memory only, and bounded: a track keeps the
pictures of its best-ranked faces (the track log's own measure, so its best face is among them), and after a
restart an appearance simply comes without a picture."""

from __future__ import annotations

from collections import OrderedDict

from models.track_log import rank_of_face
from streaming.messages import FaceRecord

#: Tracks whose pictures are held at once (the least recently seen go first): far more than a site's cameras
#: have open tracks at any time (30 cameras with 5 people each: 150).
MAX_TRACKS = 1_024
#: Pictures held for one track's open appearance (its best-ranked): a track embeds a few faces an appearance (its
#: first 3, then one every 2 s). At most 8 MB a space in all, at about 1 KB a picture.
MAX_PER_TRACK = 8


class TrackPictures:
    def __init__(self, max_tracks: int = MAX_TRACKS, max_per_track: int = MAX_PER_TRACK) -> None:
        self.max_tracks = max_tracks
        self.max_per_track = max_per_track
        self._tracks: OrderedDict[str, dict[str, tuple[float, bytes]]] = OrderedDict()

    def keep(self, track: str, face_id: str, picture: bytes, rank: float) -> None:
        """Holds the picture of a face of ``rank`` (models.track_log.rank_of_face); the lowest-ranked go first."""
        pictures = self._tracks.setdefault(track, {})
        self._tracks.move_to_end(track)
        pictures[face_id] = (rank, picture)
        if len(pictures) > self.max_per_track:
            del pictures[min(pictures, key=lambda face: pictures[face][0])]
        if len(self._tracks) > self.max_tracks:
            self._tracks.popitem(last=False)

    def keep_face(self, track: str, record: FaceRecord, picture: bytes) -> None:
        """Holds the picture of a record's face, ranked by the track log's measure from the record's numbers."""
        quality = record.quality
        self.keep(track, record.face_id, picture, rank_of_face(record.score, quality.face_size, quality.yaw))

    def take(self, track: str, face_id: str | None) -> bytes | None:
        """The picture of ``face_id`` of ``track``, if held; the track's other pictures are let go (its next
        appearance has faces of its own)."""
        pictures = self._tracks.pop(track, None)
        held = None if pictures is None or face_id is None else pictures.get(face_id)
        return None if held is None else held[1]
