"""The deployment files, checked as far as this machine can without a Docker engine or a cluster: the compose
file against the Compose Specification, the Kubernetes manifests against the API schemas, the alert rules and
scrape config with promtool, and the settings, ports and metrics they name against the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.dashboards import DEPLOY, REPO, queried_metrics
from tests.services import missing
from workers.settings import Settings, WorkerSettings

METRICS_PORT = WorkerSettings().metrics_port


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()  # extra="forbid": a misspelt FACESTREAM_ variable fails here


def test_compose_file_follows_the_compose_spec_and_names_real_things(monkeypatch: pytest.MonkeyPatch) -> None:
    # Schema: compose_spec.json of docker-compose 1.29.2 (PyPI wheel, Apache-2.0), kept in tests/schemas.
    schema = json.loads((REPO / "tests" / "schemas" / "compose-spec.json").read_text(encoding="utf-8"))
    compose_dir = DEPLOY / "compose"
    compose = yaml.safe_load((compose_dir / "compose.yaml").read_text(encoding="utf-8"))
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft201909Validator(schema).iter_errors(compose)]
    assert not errors

    services: dict[str, dict[str, Any]] = compose["services"]
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: pin {image} to a tag"
        assert not image.endswith(":latest"), f"{name}: pin {image} to a version"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose_dir / source).exists(), f"{name} mounts {source}, which is missing"
    declared = compose["secrets"]
    for name, service in services.items():
        assert set(service.get("secrets", [])) <= declared.keys(), f"{name} uses a secret not declared"
    workers = {name: s for name, s in services.items() if s["image"].startswith("facestream:")}
    assert {"embed", "cluster", "cluster-standby", "producer"} <= workers.keys()
    producer = services["producer"]
    assert producer["restart"] == "on-failure"  # a camera given up, a crash: restarted; files read: done
    assert "cameras.toml" in producer["secrets"]
    assert (compose_dir / declared["cameras.toml"]["file"]).is_file()
    for name, service in workers.items():
        assert (REPO / service["build"]["dockerfile"]).is_file()
        settings = _settings_from(service["environment"], monkeypatch)
        assert settings.kafka.bootstrap_servers == "kafka:9092"
        assert settings.kafka.client["security.protocol"] == "SASL_SSL"
        secret_files = {f"/run/secrets/{secret}" for secret in service["secrets"]}
        assert {str(settings.kafka.sasl_password_file), settings.kafka.client["ssl.ca.location"]} <= secret_files
        assert "container_name" not in service, f"{name} must stay scalable"
        assert "ports" not in service, f"{name} must stay scalable"
    for name in ("cluster", "cluster-standby"):
        worker = _settings_from(workers[name]["environment"], monkeypatch).worker
        assert worker.redis_url.startswith("rediss://facestream@redis:6379/")
        assert {str(worker.redis_password_file), str(worker.redis_ca_file)} <= {
            f"/run/secrets/{secret}" for secret in workers[name]["secrets"]
        }
    setup = (compose_dir / "kafka-setup.sh").read_text(encoding="utf-8")
    topics = re.findall(r"(facestream\.[\w.-]+):\d+", setup)
    kafka = Settings().kafka
    assert sorted(topics) == sorted(
        [kafka.frames_topic, kafka.faces_topic, kafka.identities_topic, kafka.dead_letter_topic, kafka.commands_topic]
    )
    assert {"9090:9090"} == set(services["prometheus"]["ports"])
    assert {"3000:3000"} == set(services["grafana"]["ports"])


def test_images_are_non_root_with_models_baked_in_and_a_healthcheck() -> None:
    packages = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    top_level = sorted({p.rstrip("*") for p in packages["find"]["include"]})
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DEPLOY / "docker" / name).read_text(encoding="utf-8")
        assert re.search(r"^USER 10001$", text, re.M), name
        assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in text
        assert f"EXPOSE {METRICS_PORT}" in text
        assert "facestream models --verify" in text  # sha256-checked models written at build time
        assert "HNSWLIB_NO_NATIVE=1" in text
        # x86-64 builds target AVX2 (not the build machine's CPU) and say so, for the check at start.
        assert re.search(r"^ARG HNSWLIB_X86_LEVEL=x86-64-v3$", text, re.M), name
        assert 'export CXXFLAGS="-march=$HNSWLIB_X86_LEVEL"' in text, name  # g++ reads CXXFLAGS
        assert "ENV HNSWLIB_BUILT_FOR=$HNSWLIB_X86_LEVEL" in text, name
        assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in text  # a snapshot's fork copies fewer page tables
        for package in top_level:
            assert f"COPY {package} ./{package}" in text, f"{name} does not copy the {package} package"
    assert "onnxruntime-gpu" not in (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "--extra gpu" in (DEPLOY / "docker" / "Dockerfile.gpu").read_text()


def test_prometheus_rules_and_scrape_config_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (Debian package prometheus)")
    assert promtool is not None
    rules = DEPLOY / "prometheus" / "alerts.yml"
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    assert f"port: {METRICS_PORT}" in config
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/alerts.yml", str(rules)), encoding="utf-8")
    checked = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kubernetes_manifests_validate_against_the_api_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    files = sorted(folder.glob("*.yaml"))
    assert {f.name for f in files} >= set(kustomization["resources"])
    version = kubernetes_validate.latest_version()
    documents = {f.name: _yaml_documents(f) for f in files if f.name != "kustomization.yaml"}
    env: dict[str, str] = {}
    deployments: dict[str, dict[str, Any]] = {}
    for docs in documents.values():
        for doc in docs:
            if doc["apiVersion"].startswith("keda.sh/"):
                continue  # a custom resource: checked below
            kubernetes_validate.validate(doc, version, strict=True)
            if doc["kind"] in ("ConfigMap", "Secret"):
                env |= doc.get("data", {}) | doc.get("stringData", {})
            if doc["kind"] == "Deployment":
                deployments[doc["metadata"]["name"]] = doc
    settings = _settings_from(env, monkeypatch)  # every variable is a real setting with a valid value
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["containerPort"] == METRICS_PORT, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], name
        assert container["resources"]["requests"], name
    assert "nvidia.com/gpu" in json.dumps(deployments["facestream-embed-gpu"])
    # The producer reads a mounted camera list, is restarted when it exits, and never runs twice at once.
    producer = deployments["facestream-producer"]["spec"]
    assert producer["replicas"] == 1
    assert producer["strategy"]["type"] == "Recreate"
    variables = {v["name"]: v["value"] for v in producer["template"]["spec"]["containers"][0]["env"]}
    cameras = Path(variables["FACESTREAM_SOURCES__CAMERAS_FILE"])
    (list_secret,) = [d for d in documents["producer.yaml"] if d["kind"] == "Secret"]
    assert cameras.name in list_secret["stringData"]
    assert int(variables["FACESTREAM_SOURCES__METRICS_PORT"]) == METRICS_PORT
    # The cluster stage writes index snapshots and restores through a temporary file: with a read-only root
    # filesystem, /tmp must be a volume of its own.
    cluster = deployments["facestream-cluster"]["spec"]["template"]["spec"]
    assert cluster["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    (tmp,) = [m for m in cluster["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in next(v for v in cluster["volumes"] if v["name"] == tmp["name"])

    authentication, scaled = documents["keda-scaledobject.yaml"]
    assert scaled["kind"] == "ScaledObject"
    assert authentication["kind"] == "TriggerAuthentication"
    (secret,) = documents["secret.yaml"]
    for reference in authentication["spec"]["secretTargetRef"]:
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"], reference
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == settings.kafka.frames_topic
    assert trigger["metadata"]["consumerGroup"] == "facestream-embed"  # the embed workers' default group
    assert trigger["metadata"]["bootstrapServers"] == settings.kafka.bootstrap_servers
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]


def test_a_misspelt_manifest_field_is_caught() -> None:
    (deployment,) = _yaml_documents(DEPLOY / "kubernetes" / "embed.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_the_dashboard_loads_and_every_panel_queries_a_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "facestream.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] == "facestream"
    assert all(p["targets"] and p["datasource"]["type"] == "prometheus" for p in dashboard["panels"])
    assert all(names for where, names in queried_metrics().items() if where.startswith("dashboard"))
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
