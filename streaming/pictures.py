"""The face pictures records carry (``FaceRecord.thumbnail``): which of them a page may show, as what."""

from __future__ import annotations

import base64
import binascii

#: The picture formats a face's thumbnail may have, by their first bytes: what every browser shows.
_MEDIA_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"RIFF", "image/webp"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def media_type(picture: bytes) -> str | None:
    """The picture's media type from its first bytes; None for anything that is not a WebP, JPEG or PNG."""
    for magic, kind in _MEDIA_TYPES:
        if picture.startswith(magic) and (kind != "image/webp" or picture[8:12] == b"WEBP"):
            return kind
    return None


def thumbnail_picture(encoded: str | None) -> bytes | None:
    """The picture of a record's base64 ``thumbnail``; None when there is none, or it is not base64 of a WebP,
    JPEG or PNG (the face is clustered all the same: its picture is only for showing)."""
    if not encoded:
        return None
    try:
        picture = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return picture if media_type(picture) else None
