"""A static HTML gallery: one row of face thumbnails per cluster, largest clusters first."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


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


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
h1{font-size:1.3rem;margin:0 0 .3rem}
.summary{color:#555;margin-bottom:1.2rem}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .8rem;margin-bottom:.8rem}
h2{font-size:1rem;margin:0 0 .4rem}
.meta{color:#666;font-weight:normal;font-size:.85rem}
.faces{display:flex;flex-wrap:wrap;gap:4px}
.faces img{width:72px;height:72px;border-radius:4px;object-fit:cover}
.more{align-self:center;color:#666;font-size:.85rem;padding-left:.4rem}
.seen{color:#555;font-size:.85rem;margin:0 0 .4rem}
"""


def render_gallery(title: str, summary: str, clusters: Sequence[GalleryCluster], per_cluster: int) -> str:
    rows = []
    for cluster in clusters:
        shown = cluster.thumbnails[:per_cluster]
        ids = list(cluster.face_ids) or [""] * len(shown)
        images = "".join(
            f'<img src="{html.escape(quote(path))}" loading="lazy" alt="face in cluster {cluster.cluster_id}"'
            + (f' title="{html.escape(face_id)}">' if face_id else ">")
            for path, face_id in zip(shown, ids, strict=False)
        )
        hidden = cluster.size - len(shown)
        more = f'<span class="more">+{hidden} more</span>' if hidden > 0 else ""
        sources = html.escape(", ".join(cluster.sources))
        seen = f'<p class="seen">{html.escape(cluster.appearances)}</p>' if cluster.appearances else ""
        name = f": {html.escape(cluster.name)}" if cluster.name else ""
        rows.append(
            f'<section id="cluster-{cluster.cluster_id}"><h2>Cluster {cluster.cluster_id}{name} '
            f'<span class="meta">{cluster.size} face{"s" if cluster.size != 1 else ""} · '
            f"first {html.escape(cluster.first_seen)} · last {html.escape(cluster.last_seen)} · {sources}</span></h2>"
            f'{seen}<div class="faces">{images}{more}</div></section>'
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="summary">{html.escape(summary)}</p>'
        + "\n".join(rows)
        + "</body></html>\n"
    )


def write_gallery(path: Path, title: str, summary: str, clusters: Sequence[GalleryCluster], per_cluster: int) -> None:
    path.write_text(render_gallery(title, summary, clusters, per_cluster), encoding="utf-8")
