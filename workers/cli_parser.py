"""The `facestream` command line's grammar: its commands, their arguments and help (workers/cli.py runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workers.identity.identity_cli import add_identity_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facestream", description="Group faces by identity from video and images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True)
    _run_parser(commands)
    _eval_parser(commands)
    _produce_parser(commands)
    _worker_parser(commands)
    add_identity_parser(commands)
    _models_parser(commands)
    return parser


def _run_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`facestream run`: the whole pipeline in this process."""
    run = commands.add_parser("run", help="run the whole pipeline in this process (no Kafka, no Redis)")
    run.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="video file, image folder, camera index or stream URL"
    )
    run.add_argument("--sample", action="store_true", help="add the sample photos shipped with the model package")
    run.add_argument("-o", "--out", type=Path, default=Path("facestream-out"), help="output folder")
    run.add_argument("--camera", help="camera id to record instead of the source's name (one source only)")
    run.add_argument(
        "--cameras", type=Path, metavar="FILE", help="camera list (TOML, as `produce` reads it; its spaces are ignored)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--corrections",
        type=Path,
        metavar="FILE",
        help="JSON lines of merge/split/reject/label commands naming faces and clusters of an earlier run "
        "over the same sources; applied as they become possible, and obeyed by the faces after",
    )
    _source_flags(run)
    _model_flags(run)


def _eval_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`facestream eval`: cluster labeled folders and score the result."""
    evaluate = commands.add_parser("eval", help="cluster labeled identity/image folders and score the result")
    evaluate.add_argument("dataset", type=Path, metavar="DIR")
    evaluate.add_argument("--embeddings", type=Path, metavar="FILE", help="cache of embeddings (.npz), reused if valid")
    evaluate.add_argument("--seed", type=int, default=0, help="arrival order of the online clustering (-1: as listed)")
    evaluate.add_argument(
        "--seeds", type=int, nargs="*", default=[], metavar="N", help="also score these arrival orders"
    )
    evaluate.add_argument(
        "--sweep", type=float, nargs="*", default=[], metavar="COS", help="also score these thresholds"
    )
    evaluate.add_argument("--json", action="store_true", help="print a JSON report")
    evaluate.add_argument(
        "--threshold",
        type=float,
        metavar="COS",
        help="cosine threshold of the yardstick clustering",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    _model_flags(evaluate)


def _produce_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`facestream produce`: sources to the frames topic."""
    produce = commands.add_parser(
        "produce", help="publish the frames of every source, read at once, to the frames topic as JPEG"
    )
    produce.add_argument("sources", nargs="*", metavar="SOURCE", help="video file, image folder, camera or URL")
    produce.add_argument(
        "--cameras",
        type=Path,
        metavar="FILE",
        help="camera list (TOML, [[camera]] with id, url, space, max_fps, max_size, transport; "
        "FACESTREAM_SOURCES__CAMERAS_FILE)",
    )
    produce.add_argument("--sample", action="store_true", help="add the sample photos shipped with the models")
    produce.add_argument("--bootstrap", help="Kafka bootstrap servers (FACESTREAM_KAFKA__BOOTSTRAP_SERVERS)")
    produce.add_argument("--topic", help="frames topic (FACESTREAM_KAFKA__FRAMES_TOPIC)")
    produce.add_argument("--space", default="default", help="identity space the frames belong to")
    produce.add_argument("--camera", help="camera id instead of the source's name (one source only)")
    produce.add_argument(
        "--fps",
        type=float,
        help="files: replay at this many frames per second (default: the file's rate; 0: no pacing)",
    )
    produce.add_argument("--every", type=int, default=1, metavar="N", help="keep one frame in N")
    produce.add_argument(
        "-X", dest="client", action="append", default=[], metavar="KEY=VALUE", help="librdkafka setting"
    )
    produce.add_argument("--no-progress", action="store_true", help="no progress bar")
    produce.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="/metrics, /healthz, /readyz port (0: none; default 9401)"
    )
    _source_flags(produce)


def _worker_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`facestream worker`: the Kafka stages."""
    worker = commands.add_parser("worker", help="run the Kafka stages: embed (frames -> faces), cluster, or all")
    worker.add_argument("--role", choices=["embed", "cluster", "all"], default="embed", help="which stage(s) to run")
    worker.add_argument("--bootstrap", help="Kafka bootstrap servers (FACESTREAM_KAFKA__BOOTSTRAP_SERVERS)")
    worker.add_argument("--group", default="facestream-embed", help="consumer group of the embed workers")
    worker.add_argument("--redis", metavar="URL", help="Redis of the clustering state (FACESTREAM_WORKER__REDIS_URL)")
    worker.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="/metrics, /healthz, /readyz port (0: none; default 9400)"
    )
    worker.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON objects")
    _model_flags(worker)


def _models_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`facestream models`: the built-in models."""
    models = commands.add_parser("models", help="list the built-in models, their sources and licences")
    models.add_argument(
        "--verify",
        action="store_true",
        help="check every built-in model's sha256 and write those that ship as bytes to the cache (image builds)",
    )


def _source_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sources (also FACESTREAM_SOURCES__... environment variables)")
    group.add_argument(
        "--max-size",
        type=int,
        metavar="PX",
        help="scale frames down to this long side at the edge (0: full size; produce's default: the detector's "
        "input side)",
    )
    group.add_argument("--max-fps", type=float, metavar="FPS", help="keep at most this many frames a second a source")
    group.add_argument(
        "--retries", type=int, metavar="N", help="give a live source up after N failed reconnections (default: never)"
    )
    group.add_argument("--open-timeout", type=float, metavar="S", help="longest wait to connect to a stream (10)")
    group.add_argument("--read-timeout", type=float, metavar="S", help="longest silence of an open stream (5)")
    group.add_argument("--transport", choices=["tcp", "udp"], help="RTSP transport (tcp)")


def _model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models (also FACESTREAM_MODELS__... environment variables)")
    group.add_argument("--detector", help="registry id or ONNX path of the face detector")
    group.add_argument("--embedder", help="registry id or ONNX path of the face embedder")
    group.add_argument("--det-size", type=int, metavar="PX", help="detector input side, e.g. 640")
    group.add_argument("--cpu", action="store_true", help="use the CPU execution provider only")
    group.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (0: automatic)")
    group.add_argument("--batch-size", type=int, metavar="N", help="frames per detector batch")
    group.add_argument("--no-tracking", action="store_true", help="detect every frame and embed every accepted face")
