"""`facestream worker`: one process running the embed stage, the cluster stage, or both, with its HTTP port.

Start: connect to Redis (a cluster role fails now if it is unreachable), load the models (embed role), open
/metrics, /healthz and /readyz, then run each role's loop in its own thread. Stop: SIGTERM or SIGINT sets the
flag; each loop finishes and commits the batch in hand, then closes its clients; the HTTP port closes last.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from clustering.host.instruction_set import check_hnswlib_build
from clustering.redis_state.redis_client import RedisClient, check_permissions, connect
from streaming.redact import read_secret
from workers.plumbing import metrics
from workers.plumbing.lifecycle import StopFlag
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.cluster.cluster_worker import ClusterWorker
    from workers.identity.identity_api import IdentityApi

log = logging.getLogger(__name__)

Role = Literal["embed", "cluster", "all"]

#: Longest wait for the stages to finish their batch after a stop was asked for (Kubernetes waits 60 s).
SHUTDOWN_GRACE_S = 45.0


@dataclass
class ServiceSummary:
    lines: list[str]
    failed: bool


class Stage(Protocol):
    health: metrics.Health

    def run(self, should_stop: Callable[[], bool]) -> None: ...

    def summary(self) -> str: ...


def identity_api(settings: Settings, client: RedisClient, cluster: ClusterWorker) -> IdentityApi:
    """The identity API of a cluster worker, started (workers/identity/identity_api.py)."""
    from workers.identity.command_sender import CommandSender  # noqa: PLC0415 - only when it is on
    from workers.identity.identity_api import IdentityApi, WorkerIdentities  # noqa: PLC0415 - only when it is on

    config = settings.worker
    if config.api_token_file is None:
        raise ValueError("the identity API (FACESTREAM_WORKER__API_PORT) needs FACESTREAM_WORKER__API_TOKEN_FILE")
    from models.analyzer import FaceAnalyzer  # noqa: PLC0415 - only when it is on

    reader = WorkerIdentities(
        client, cluster.engine_of, cluster.state_lock, lambda: FaceAnalyzer.from_settings(settings.models)
    )
    token = read_secret(config.api_token_file) or ""
    commands = CommandSender(settings.kafka)
    return IdentityApi(
        reader, commands, config.api_host, config.api_port, token=token, dimension=config.dimension
    ).start()


def run_worker(
    settings: Settings, role: Role, stop: StopFlag, *, embed_group: str = "facestream-embed"
) -> ServiceSummary:
    """Runs the stages of ``role`` until ``stop`` is set or a stage fails; returns one line per stage."""
    stages, api = _stages(settings, role, embed_group)
    server = None
    if settings.worker.metrics_port:
        healths = [stage.health for stage in stages]
        server = metrics.HealthServer(healths, settings.worker.metrics_host, settings.worker.metrics_port).start()
    try:
        failures = _run_stages(stages, stop)
    finally:
        if server is not None:
            server.stop()
        if api is not None:
            api.stop()
    return ServiceSummary([stage.summary() for stage in stages], bool(failures))


def _stages(settings: Settings, role: Role, embed_group: str) -> tuple[list[Stage], IdentityApi | None]:
    """The stages of ``role``, built and checked (models loaded, Redis reached and its rights probed), and the
    identity API of the cluster stage where it has a port."""
    kafka = settings.kafka
    stages: list[Stage] = []
    api: IdentityApi | None = None
    if role in ("embed", "all"):
        from models.analyzer import FaceAnalyzer  # noqa: PLC0415 - a cluster-only worker loads no model
        from workers.embed.embed_worker import EmbedWorker  # noqa: PLC0415

        stages.append(EmbedWorker(settings, FaceAnalyzer.from_settings(settings.models), group=embed_group))
        log.info("embed stage: %s -> %s in group %s", kafka.frames_topic, kafka.faces_topic, embed_group)
    if role in ("cluster", "all"):
        from workers.cluster.cluster_worker import ClusterWorker  # noqa: PLC0415

        config = settings.worker
        check_hnswlib_build()  # before joining the group: a CPU below the image's hnswlib fails here, said why
        client = connect(config.redis_address())
        check_permissions(client, config.redis_url)
        cluster = ClusterWorker(settings, client)
        stages.append(cluster)
        if config.api_port:
            api = identity_api(settings, client, cluster)
        log.info(
            "cluster stage: %s -> %s in group %s (the spaces of the partitions it is given)",
            kafka.faces_topic,
            kafka.identities_topic,
            config.cluster_group,
        )
    return stages, api


def _run_stages(stages: list[Stage], stop: StopFlag) -> list[str]:
    """Runs each stage on its own thread until ``stop`` is set (a stage that fails sets it); returns the roles
    that failed, or did not stop within SHUTDOWN_GRACE_S of it."""
    failures: list[str] = []

    def guarded(stage: Stage) -> None:
        try:
            stage.run(stop.is_set)
        except Exception:
            log.exception(
                "the %s stage stopped on an error it cannot recover from; stopping the worker", stage.health.role
            )
            failures.append(stage.health.role)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(stage,), name=stage.health.role, daemon=True) for stage in stages]
    for thread in threads:
        thread.start()
    stopping_since: float | None = None
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.2)
        if stop.is_set():
            stopping_since = stopping_since or time.monotonic()
            if time.monotonic() - stopping_since > SHUTDOWN_GRACE_S:
                stuck = [thread.name for thread in threads if thread.is_alive()]
                log.error(
                    "stage(s) %s did not stop within %.0f s; exiting without them (an uncommitted batch is "
                    "done again by the next worker)",
                    ", ".join(stuck),
                    SHUTDOWN_GRACE_S,
                )
                failures.extend(stuck)
                break
    return failures
