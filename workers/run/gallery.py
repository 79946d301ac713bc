"""A static HTML gallery: one row of face thumbnails per cluster, largest clusters first."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from workers.identity.console import console_asset


@dataclass(frozen=True)
class GalleryCluster:
    cluster_id: int
    size: int
    first_seen: str
    last_seen: str
    sources: Sequence[str]
    thumbnails: Sequence[str]  # paths relative to the gallery, representatives first
    appearances: str = ""  # e.g. "3 appearances: door 2 (0:01-0:12, 1:30-1:41), hall 1 (0:05-0:09)"
    name: str | None = None  # given by a `label` correction
    face_ids: Sequence[str] = ()  # of the thumbnails, shown on hover: what a correction names


#: What the gallery adds to the console's stylesheet: a wider card and its strip of further faces.
_GALLERY_STYLE = (
    ".grid.wide{grid-template-columns:repeat(auto-fill,minmax(220px,1fr))}"
    ".strip{display:flex;flex-wrap:wrap;gap:3px}"
    ".strip img{width:44px;height:44px;border-radius:4px;object-fit:cover}"
    ".card h2{font-size:1rem;margin:0}"
)


def _style() -> str:
    """The console's stylesheet (workers/identity/console/) and the gallery's additions, so that the gallery of
    `facestream run` and the service's console look like one product."""
    return console_asset("console.css").decode("utf-8") + _GALLERY_STYLE


def _face(path: str, face_id: str, alt: str) -> str:
    title = f' title="{html.escape(face_id)}"' if face_id else ""
    return f'<img src="{html.escape(quote(path))}" loading="lazy" alt="{html.escape(alt)}"{title}>'


def _card(cluster: GalleryCluster, per_cluster: int) -> str:
    shown = cluster.thumbnails[:per_cluster]
    ids = list(cluster.face_ids) or [""] * len(shown)
    label = f"Cluster {cluster.cluster_id}" + (f": {cluster.name}" if cluster.name else "")
    faces = [
        _face(path, face_id, f"face in cluster {cluster.cluster_id}") for path, face_id in zip(shown, ids, strict=False)
    ]
    hidden = cluster.size - len(shown)
    more = f'<span class="facts">+{hidden} more</span>' if hidden > 0 else ""
    best = faces[0] if faces else '<div class="blank"></div>'
    seen = f'<p class="facts">{html.escape(cluster.appearances)}</p>' if cluster.appearances else ""
    return (
        f'<section class="card" id="cluster-{cluster.cluster_id}">{best}<h2 class="title">{html.escape(label)}</h2>'
        f'<span class="facts">{cluster.size} face{"s" if cluster.size != 1 else ""} · '
        f"{html.escape(', '.join(cluster.sources))} · first {html.escape(cluster.first_seen)} · "
        f"last {html.escape(cluster.last_seen)}</span>{seen}"
        f'<div class="strip">{"".join(faces[1:])}{more}</div></section>'
    )


def render_gallery(title: str, summary: str, clusters: Sequence[GalleryCluster], per_cluster: int) -> str:
    """The page: the console's look, read-only (a run is corrected with a corrections file, README)."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_style()}</style></head><body>"
        f'<header class="bar"><span class="brand">facestream</span></header>'
        f'<main><h1>Identities</h1><p class="muted">{html.escape(summary)}</p><div class="grid wide">'
        + "\n".join(_card(cluster, per_cluster) for cluster in clusters)
        + "</div></main></body></html>\n"
    )


def write_gallery(path: Path, title: str, summary: str, clusters: Sequence[GalleryCluster], per_cluster: int) -> None:
    path.write_text(render_gallery(title, summary, clusters, per_cluster), encoding="utf-8")
