"""The `facestream` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from clustering.host.instruction_set import InstructionSetError
from models.errors import ModelError
from models.registry import REGISTRY, builtin_path, sample_images
from streaming.camera_list import CameraListError
from streaming.messages import SPACE_PATTERN
from streaming.read_policy import CameraStatus
from streaming.sources import SourceError
from workers.cli_parser import build_parser
from workers.identity.identity_cli import IdentityCommandError, run_identity
from workers.plumbing.lifecycle import StopFlag
from workers.plumbing.logs import configure_logging
from workers.produce.source_readers import SourcePlan, plan_readers
from workers.settings import Settings, load_settings

log = logging.getLogger("facestream")

EXIT_USAGE = 2
EXIT_FAILED = 1


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
    if sources := _source_overrides(args):
        overrides["sources"] = sources
    return overrides


def _plan(args: argparse.Namespace, settings: Settings, producer: bool) -> SourcePlan | None:
    """What the command reads, or None after logging why the arguments name nothing."""
    uris = list(args.sources) + ([str(p) for p in sample_images()] if args.sample else [])
    cameras_file = args.cameras
    if not uris and cameras_file is None and settings.sources.cameras_file is None:
        log.error("give at least one SOURCE, --cameras FILE, or --sample")
        return None
    if args.camera and len(uris) > 1:
        log.error("--camera names one source; %d were given", len(uris))
        return None
    return SourcePlan(
        uris,
        args.camera,
        cameras_file,
        space=getattr(args, "space", "default"),
        every=getattr(args, "every", 1),
        fps=getattr(args, "fps", None),
        producer=producer,
    )


def _source_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `sources` settings given as flags."""
    flags = ("max_size", "max_fps", "retries", "open_timeout", "read_timeout", "transport", "metrics_port")
    names = ("max_size", "max_fps", "max_retries", "open_timeout_s", "read_timeout_s", "transport", "metrics_port")
    given = {name: getattr(args, flag, None) for flag, name in zip(flags, names, strict=True)}
    return {name: value for name, value in given.items() if value is not None}


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from workers.run.corrections_file import CorrectionsFileError, read_corrections  # noqa: PLC0415
    from workers.run.run_job import run_pipeline  # noqa: PLC0415 - keeps `facestream models` light

    plan = _plan(args, settings, producer=False)
    if plan is None:
        return EXIT_USAGE
    try:
        corrections = read_corrections(args.corrections) if args.corrections else []
    except CorrectionsFileError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    planned = plan_readers(plan, settings)
    stop = StopFlag()
    stop.install()
    summary = run_pipeline(
        planned, args.out, settings, stop=stop, progress=not args.no_progress, corrections=corrections
    )
    print(summary.line(args.out))
    return _sources_failed(planned.readers.failed())


def _sources_failed(failed: list[CameraStatus]) -> int:
    """The exit status after reading: 1 where a source was given up (its reader logged why)."""
    if failed:
        log.error("%d source(s) ended unexpectedly: %s", len(failed), ", ".join(s.camera for s in failed))
    return EXIT_FAILED if failed else 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from workers.run.evaluate import evaluate  # noqa: PLC0415

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
    from workers.produce.producer import run_producer  # noqa: PLC0415 - keeps the other commands light

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
    overrides: dict[str, Any] = {"kafka": kafka} if kafka else {}
    if sources := _source_overrides(args):
        overrides["sources"] = sources
    settings = load_settings(**overrides)
    if args.every < 1:
        log.error("--every must be 1 or more")
        return EXIT_USAGE
    if not re.fullmatch(SPACE_PATTERN, args.space):
        log.error("--space %r: a space has no braces, colons or white space, and 100 characters at most", args.space)
        return EXIT_USAGE
    plan = _plan(args, settings, producer=True)
    if plan is None:
        return EXIT_USAGE
    planned = plan_readers(plan, settings)
    stop = StopFlag()
    stop.install()
    summary = run_producer(
        planned, settings.kafka, settings.sources, progress=not args.no_progress, should_stop=stop.is_set
    )
    print(summary.line(settings.kafka.frames_topic))
    failed = _sources_failed(planned.readers.failed())
    return EXIT_FAILED if summary.failed or failed else 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from clustering.store import StoreError  # noqa: PLC0415 - keeps the other commands light
    from workers.plumbing.service import run_worker  # noqa: PLC0415

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
            return _worker(args, settings)
        return _eval(args, settings)
    except ValidationError as exc:
        log.error("invalid configuration:\n%s", exc)
        return EXIT_USAGE
    except (
        SourceError,
        CameraListError,
        ModelError,
        FileNotFoundError,
        ValueError,
        IdentityCommandError,
        InstructionSetError,
    ) as exc:
        log.error("%s", exc)
        return EXIT_FAILED


def console_main() -> None:
    """The `facestream` command as a process: ``main``, then an exit that runs no interpreter finalisation.
    Every output is written and every client flushed and closed by then; what can still be running is a live
    camera's reader inside a read of FFmpeg's that waits for its timeout, and librdkafka's destructors, and
    tearing the interpreter down under either can block or crash the exit."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
