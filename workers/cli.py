"""The `facestream` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clustering.instruction_set import InstructionSetError
from models.errors import ModelError
from models.registry import REGISTRY, builtin_path, sample_images
from streaming.sources import FrameSource, SourceError
from workers.identity_cli import IdentityCommandError, add_identity_parser, run_identity
from workers.lifecycle import StopFlag
from workers.logs import configure_logging
from workers.settings import Settings, load_settings

log = logging.getLogger("facestream")

EXIT_USAGE = 2
EXIT_FAILED = 1


def _model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models (also FACESTREAM_MODELS__... environment variables)")
    group.add_argument("--detector", help="registry id or ONNX path of the face detector")
    group.add_argument("--embedder", help="registry id or ONNX path of the face embedder")
    group.add_argument("--det-size", type=int, metavar="PX", help="detector input side, e.g. 640")
    group.add_argument("--cpu", action="store_true", help="use the CPU execution provider only")
    group.add_argument("--threads", type=int, metavar="N", help="onnxruntime intra-op threads (0: automatic)")
    group.add_argument("--batch-size", type=int, metavar="N", help="frames per detector batch")
    group.add_argument("--no-tracking", action="store_true", help="detect every frame and embed every accepted face")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    models: dict[str, Any] = {}
    if args.detector:
        models.setdefault("detector", {})["model"] = args.detector
    if args.det_size:
        models.setdefault("detector", {})["input_size"] = (args.det_size, args.det_size)
    if args.embedder:
        models.setdefault("embedder", {})["model"] = args.embedder
    if args.cpu:
        models.setdefault("runtime", {})["providers"] = ("CPUExecutionProvider",)
    if args.threads is not None:
        models.setdefault("runtime", {})["intra_op_threads"] = args.threads
    overrides: dict[str, Any] = {"models": models} if models else {}
    if args.batch_size:
        overrides["run"] = {"batch_size": args.batch_size}
    if getattr(args, "threshold", None) is not None:
        overrides["clustering"] = {"cosine_threshold": args.threshold}
    if getattr(args, "no_tracking", False):
        overrides["tracking"] = {"enabled": False}
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facestream", description="Group faces by identity from video and images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the whole pipeline in this process (no Kafka, no Redis)")
    run.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="video file, image folder, camera index or stream URL"
    )
    run.add_argument("--sample", action="store_true", help="add the sample photos shipped with the model package")
    run.add_argument("-o", "--out", type=Path, default=Path("facestream-out"), help="output folder")
    run.add_argument("--camera", help="camera id to record instead of the source's name (one source only)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--corrections",
        type=Path,
        metavar="FILE",
        help="JSON lines of merge/split/reject/label commands naming faces and clusters of an earlier run "
        "over the same sources; applied as they become possible, and obeyed by the faces after",
    )
    _model_flags(run)

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

    produce = commands.add_parser("produce", help="publish frames of a source to the frames topic as JPEG")
    produce.add_argument("sources", nargs="*", metavar="SOURCE", help="video file, image folder, camera or URL")
    produce.add_argument("--sample", action="store_true", help="add the sample photos shipped with the models")
    produce.add_argument("--bootstrap", help="Kafka bootstrap servers (FACESTREAM_KAFKA__BOOTSTRAP_SERVERS)")
    produce.add_argument("--topic", help="frames topic (FACESTREAM_KAFKA__FRAMES_TOPIC)")
    produce.add_argument("--space", default="default", help="identity space the frames belong to")
    produce.add_argument("--camera", help="camera id instead of the source's name (one source only)")
    produce.add_argument("--fps", type=float, help="frames per second (default: the source's rate; 0: no pacing)")
    produce.add_argument("--every", type=int, default=1, metavar="N", help="keep one frame in N")
    produce.add_argument(
        "-X", dest="client", action="append", default=[], metavar="KEY=VALUE", help="librdkafka setting"
    )
    produce.add_argument("--no-progress", action="store_true", help="no progress bar")

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

    add_identity_parser(commands)

    models = commands.add_parser("models", help="list the built-in models, their sources and licences")
    models.add_argument(
        "--verify",
        action="store_true",
        help="check every built-in model's sha256 and write those that ship as bytes to the cache (image builds)",
    )
    return parser


def _sources(args: argparse.Namespace, settings: Settings) -> list[FrameSource] | None:
    """The command's sources, or None after logging why the arguments name none."""
    uris = list(args.sources) + ([str(p) for p in sample_images()] if args.sample else [])
    if not uris:
        log.error("give at least one SOURCE, or --sample")
        return None
    if args.camera and len(uris) > 1:
        log.error("--camera names one source; %d were given", len(uris))
        return None
    return [FrameSource(uri, args.camera, settings.run.max_pixels) for uri in uris]


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from workers.corrections_file import CorrectionsFileError, read_corrections  # noqa: PLC0415
    from workers.run_job import run_pipeline  # noqa: PLC0415 - keeps `facestream models` light

    sources = _sources(args, settings)
    if sources is None:
        return EXIT_USAGE
    try:
        corrections = read_corrections(args.corrections) if args.corrections else []
    except CorrectionsFileError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    stop = StopFlag()
    stop.install()
    summary = run_pipeline(
        sources, args.out, settings, stop=stop, progress=not args.no_progress, corrections=corrections
    )
    print(summary.line(args.out))
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from workers.evaluate import evaluate  # noqa: PLC0415

    report = evaluate(
        args.dataset,
        settings,
        cache=args.embeddings,
        seed=None if args.seed < 0 else args.seed,
        seeds=args.seeds,
        sweep=args.sweep,
        progress=not args.no_progress,
    )
    print(json.dumps(report.as_dict(), indent=1) if args.json else report.table())
    return 0


def _produce(args: argparse.Namespace) -> int:
    from streaming.produce import produce_frames  # noqa: PLC0415 - keeps the other commands light

    kafka: dict[str, Any] = {}
    if args.bootstrap:
        kafka["bootstrap_servers"] = args.bootstrap
    if args.topic:
        kafka["frames_topic"] = args.topic
    if args.client:
        pairs = [item.split("=", 1) for item in args.client]
        if any(len(pair) != 2 for pair in pairs):
            log.error("-X takes KEY=VALUE")
            return EXIT_USAGE
        kafka["client"] = dict(pairs)
    settings = load_settings(kafka=kafka) if kafka else load_settings()
    if args.every < 1:
        log.error("--every must be 1 or more")
        return EXIT_USAGE
    sources = _sources(args, settings)
    if sources is None:
        return EXIT_USAGE
    stop = StopFlag()
    stop.install()
    summary = produce_frames(
        sources,
        settings.kafka,
        space=args.space,
        fps=args.fps,
        every=args.every,
        progress=not args.no_progress,
        should_stop=stop.is_set,
    )
    print(summary.line(settings.kafka.frames_topic))
    return EXIT_FAILED if summary.failed else 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from clustering.store import StoreError  # noqa: PLC0415 - keeps the other commands light
    from workers.service import run_worker  # noqa: PLC0415

    worker: dict[str, Any] = {}
    for flag, name in (("redis", "redis_url"), ("metrics_port", "metrics_port")):
        if getattr(args, flag) is not None:
            worker[name] = getattr(args, flag)
    if args.log_format:
        worker["log_format"] = args.log_format
    kafka = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = settings.model_copy(
        update={
            "worker": settings.worker.model_validate({**settings.worker.model_dump(), **worker}),
            "kafka": settings.kafka.model_copy(update=kafka),
        }
    )
    configure_logging(args.verbose, settings.worker.log_format)
    stop = StopFlag()
    stop.install()
    try:
        summary = run_worker(settings, args.role, stop, embed_group=args.group)
    except (StoreError, InstructionSetError) as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    for line in summary.lines:
        print(line)
    return EXIT_FAILED if summary.failed else 0


def _models(verify: bool) -> int:
    if verify:
        cache = load_settings().models.runtime.cache_dir
        for spec in REGISTRY.values():
            print(f"{spec.id:<22}ok  {builtin_path(spec, cache)}")
        return 0
    for spec in REGISTRY.values():
        print(f"{spec.id:<22}{spec.task.value:<10}{spec.description}\n{'':<32}from {spec.package}/{spec.resource}")
        print(f"{'':<32}sha256 {spec.sha256}\n{'':<32}licence: {spec.licence}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.command == "models":
        try:
            return _models(args.verify)
        except ModelError as exc:
            log.error("%s", exc)
            return EXIT_FAILED
    try:
        if args.command == "produce":
            return _produce(args)
        settings = load_settings(**({} if args.command == "identity" else _overrides(args)))
        if args.command == "run":
            return _run(args, settings)
        if args.command == "identity":
            print(json.dumps(run_identity(args, settings), indent=1))
            return 0
        if args.command == "worker":
            code = _worker(args, settings)
            # Every Kafka client was flushed and closed by its stage; librdkafka's destructors can still block
            # the interpreter's exit (a known class of librdkafka issues), so a worker leaves at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return _eval(args, settings)
    except ValidationError as exc:
        log.error("invalid configuration:\n%s", exc)
        return EXIT_USAGE
    except (SourceError, ModelError, FileNotFoundError, ValueError, IdentityCommandError, InstructionSetError) as exc:
        log.error("%s", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
