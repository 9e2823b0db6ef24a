"""deploy/ checked offline, without a Docker engine or a cluster (deploy/README.md: Validating these files):

- compose.yaml against the Compose specification's JSON schema (the copy check-jsonschema vendors), and its rules:
  one image for every closeloop service, the migrations before the workers and the web app, two workers,
  Prometheus and Grafana with the dashboard, the metrics token from deploy/.env;
- kubernetes/, rendered as kustomize would (namespace, images), every object against Kubernetes' own schemas
  (kubernetes-validate, strict), and the rules: probes (httpGet of /healthz and /readyz, the worker's on 9464),
  resources, non-root, the PDB and HPA on the workers, `closeloop db upgrade` as a Job and an init container,
  Secrets (the metrics token too) referenced and never inlined; the optional PodMonitors (a CRD) on their own;
- the Dockerfile, parsed (dockerfile-parse): stages, a pinned base, a non-root user, a health check, the entrypoint,
  no remote ADD, no secret in ENV or ARG;
- the Grafana dashboard against the metric names deploy/README.md's contract lists, and the Prometheus config
  (the closeloop jobs' bearer token, from the file compose gives Prometheus);
- the Temporal Helm values, the container config and the Temporal setup script.

Every checker returns the problems it finds; each test also runs it on a broken copy (in tmp_path) and expects it
to find the breakage, so no check passes by accident."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shutil
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30"
IMAGE = "closeloop"  # the image name the manifests use (kustomization.yaml's images: sets registry and tag)
METRICS_TOKEN = "CLOSELOOP_METRICS_TOKEN"  # the bearer token of /metrics, the worker's and the web app's
SECRETISH = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|DB_URL|WEBHOOKS|WEBHOOK_URLS|_BASIC$")
PINNED = re.compile(r"^[\w.\-/]+:v?\d+\.\d+(\.\d+)?[\w.\-]*(@sha256:[0-9a-f]{64})?$")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ------------------------------------------------------------------------------------------------------ compose

def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(vendored.read_text())


def closeloop_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items()
            if str(s.get("image", "")).startswith(f"{IMAGE}:")
            or (s.get("build") or {}).get("dockerfile") == "deploy/Dockerfile"}


def compose_problems(path: Path) -> list[str]:
    data = load_yaml(path)
    validator = jsonschema.Draft202012Validator(compose_schema())
    problems = [f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path)))]
    if problems:
        return problems
    services: dict[str, Any] = data["services"]
    ours = closeloop_services(services)
    images = {(s.get("image"), json.dumps(s.get("build"), sort_keys=True)) for s in ours.values()}
    if len(images) != 1:
        problems.append(f"closeloop services use different images or builds: {sorted(map(str, images))}")
    elif not next(iter(images))[1] or json.loads(next(iter(images))[1]).get("dockerfile") != "deploy/Dockerfile":
        problems.append("closeloop services are not built from deploy/Dockerfile")
    migrate = [n for n, s in ours.items() if s.get("command") == ["db", "upgrade"]]
    if len(migrate) != 1:
        problems.append(f"want one `closeloop db upgrade` service, found {migrate}")
    else:
        if services[migrate[0]].get("restart") not in ("no", "on-failure"):
            problems.append(f"{migrate[0]} is a one-shot: restart must be no or on-failure")
        for name, s in ours.items():
            if name == migrate[0]:
                continue
            needs = s.get("depends_on") or {}
            condition = needs.get(migrate[0], {}).get("condition") if isinstance(needs, dict) else None
            if condition != "service_completed_successfully":
                problems.append(f"{name} does not wait for {migrate[0]} to complete successfully")
    workers = sum(int((s.get("deploy") or {}).get("replicas", 1)) for s in ours.values()
                  if s.get("command") == ["worker"])
    if workers < 2:
        problems.append(f"want at least two workers, found {workers}")
    if not any(s.get("command") == ["serve"] for s in ours.values()):
        problems.append("no web app (closeloop serve)")
    for name, s in services.items():
        image = str(s.get("image", ""))
        if name not in ours and not PINNED.match(image):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
        long_running = s.get("command") != ["db", "upgrade"] and name != "temporal-setup"
        if long_running and s.get("restart") not in ("always", "unless-stopped", "on-failure"):
            problems.append(f"{name}: no restart policy")
        for key, value in (s.get("environment") or {}).items():
            if SECRETISH.search(key) and value and "${" not in str(value):
                problems.append(f"{name}: {key} holds a literal secret (use ${{...}} from deploy/.env)")
        for volume in s.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("."):
                if not (path.parent / source).exists():
                    problems.append(f"{name}: mounts {source}, which does not exist")
            elif source not in (data.get("volumes") or {}) and not source.startswith("/"):
                problems.append(f"{name}: named volume {source} is not declared")
    for name, s in ours.items():
        if s.get("command") in (["worker"], ["serve"]):
            token = str((s.get("environment") or {}).get(METRICS_TOKEN, ""))
            if not re.fullmatch(r"\$\{" + METRICS_TOKEN + r"(:\?[^}]*)?\}", token):
                problems.append(f"{name}: {METRICS_TOKEN} does not come from deploy/.env (${{{METRICS_TOKEN}:?...}})")
    for needed in ("postgresql", "temporal", "temporal-ui", "prometheus", "grafana"):
        if needed not in services:
            problems.append(f"no {needed} service")
    if "temporal" in services and not str(services["temporal"].get("environment", {}).get("DB", "")).startswith(
            "postgres"):
        problems.append("temporal does not persist to PostgreSQL")
    for name in ("postgresql", "temporal", *[n for n, s in ours.items() if s.get("command") != ["db", "upgrade"]]):
        if name in services and not (services[name].get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: no healthcheck")
    grafana_mounts = [str(v) for v in (services.get("grafana") or {}).get("volumes") or []]
    if not any(v.startswith("./grafana/dashboards:") for v in grafana_mounts):
        problems.append("grafana does not mount ./grafana/dashboards")
    if not any(v.startswith("./prometheus/prometheus.yml:") for v in (services.get("prometheus") or {}).get(
            "volumes") or []):
        problems.append("prometheus does not mount ./prometheus/prometheus.yml")
    return problems


def copy_deploy(tmp_path: Path) -> Path:
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    return target


def rewrite_yaml(path: Path, change: Any) -> None:
    docs = load_all_yaml(path)
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_compose_file_is_valid_and_follows_the_rules(tmp_path: Path) -> None:
    assert compose_problems(DEPLOY / "compose.yaml") == []

    broken = copy_deploy(tmp_path) / "compose.yaml"

    def breakage(docs: list[dict[str, Any]]) -> None:
        services = docs[0]["services"]
        services["worker-2"]["restart_policy"] = "always"  # not a Compose key
    rewrite_yaml(broken, breakage)
    assert any("schema" in p and "restart_policy" in p for p in compose_problems(broken))

    def rules(docs: list[dict[str, Any]]) -> None:
        services = docs[0]["services"]
        del services["worker-2"]
        services["web"]["depends_on"] = {"postgresql": {"condition": "service_healthy"}}
        services["web"]["image"] = "closeloop:other"
        services["grafana"]["volumes"] = []
        services["postgresql"]["image"] = "postgres:latest"
        services["worker-1"]["environment"] = {k: v for k, v in services["worker-1"]["environment"].items()
                                               if k != "CLOSELOOP_METRICS_TOKEN"}
        services["web"]["environment"] = {**services["web"]["environment"], "CLOSELOOP_METRICS_TOKEN": "s3cret"}
    shutil.copy(DEPLOY / "compose.yaml", broken)
    rewrite_yaml(broken, rules)
    found = compose_problems(broken)
    for expected in ("want at least two workers", "web does not wait for migrate", "different images",
                     "grafana does not mount", "postgresql: image 'postgres:latest' is not pinned",
                     "worker-1: CLOSELOOP_METRICS_TOKEN does not come from deploy/.env",
                     "web: CLOSELOOP_METRICS_TOKEN does not come from deploy/.env",
                     "web: CLOSELOOP_METRICS_TOKEN holds a literal secret"):
        assert any(expected in p for p in found), (expected, found)


def test_compose_env_example_holds_every_variable_compose_requires() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = dict(line.split("=", 1) for line in (DEPLOY / "compose.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required and required <= example.keys()
    assert all(value.startswith("change-me") for key, value in example.items() if SECRETISH.search(key))


# --------------------------------------------------------------------------------------------------- kubernetes

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def render_kustomization(folder: Path) -> list[dict[str, Any]]:
    """What `kustomize build` makes of kustomization.yaml, for the transformers it uses (namespace, images); any
    other key is refused, so a new transformer is not silently skipped."""
    kustomization = load_yaml(folder / "kustomization.yaml")
    unknown = set(kustomization) - {"apiVersion", "kind", "namespace", "resources", "images"}
    if unknown:
        raise ValueError(f"kustomization.yaml: the test does not render {sorted(unknown)}")
    images = {i["name"]: i for i in kustomization.get("images", [])}
    out: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        for doc in load_all_yaml(folder / resource):
            if kustomization.get("namespace") and doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
            for container in containers_of(doc, init=True):
                name, _, tag = container["image"].partition(":")
                if name in images:
                    new = images[name]
                    container["image"] = f"{new.get('newName', name)}:{new.get('newTag', tag or 'latest')}"
            out.append(doc)
    return out


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def containers_of(doc: dict[str, Any], *, init: bool = False) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    if spec is None:
        return
    yield from spec.get("containers", [])
    if init:
        yield from spec.get("initContainers", [])


def config_problems(text: str, tmp_path: Path) -> list[str]:
    """`closeloop config check` on a config file's text (load_config and the integrations' sections)."""
    from closeloop.config import ConfigError, load_config
    from closeloop.integrations.registry import check

    path = tmp_path / "closeloop-check.toml"
    path.write_text(text)
    try:
        check(load_config(path, env={}))
    except ConfigError as e:
        return [f"closeloop.toml: {e}"]
    return []


WORKER_PORT = 9464  # [telemetry] worker_port: the worker's /metrics, /healthz and /readyz
WEB_PORT = 8080
PROBES = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    """A probe's or endpoint's port (a number, or the name of one of the container's ports) as a number."""
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    return named.get(port)


def http_probe_problems(container: dict[str, Any], port: int, where: str) -> list[str]:
    """The probes of a container serving /healthz and /readyz on `port`: startup and liveness ask /healthz (alive),
    readiness /readyz (Temporal and the database answer), all by httpGet on that port."""
    problems: list[str] = []
    for probe, path in PROBES.items():
        if probe == "startupProbe" and probe not in container:
            continue
        get = (container.get(probe) or {}).get("httpGet")
        if get is None:
            problems.append(f"{where}: {probe} is not an httpGet of {path}")
        elif get.get("path") != path or container_port(container, get.get("port", "")) != port:
            problems.append(f"{where}: {probe} asks {get.get('path')} on {get.get('port')}, want {path} on {port}")
    return problems


def plain_env(container: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The container's environment as far as the manifests say it: its ConfigMaps' (envFrom), then its own `env`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update((configmaps.get(source["configMapRef"]["name"]) or {}).get("data") or {})
    env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return env


def kubernetes_problems(folder: Path, tmp_path: Path) -> list[str]:
    try:
        objects = render_kustomization(folder)
    except (ValueError, OSError, yaml.YAMLError) as e:
        return [str(e)]
    problems: list[str] = []
    for doc in objects:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where}: {e.message} at {'/'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
    if problems:
        return problems
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in objects:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    if "Secret" in by_kind:
        problems.append(f"Secret values in the manifests: {sorted(by_kind['Secret'])} (reference them instead)")
    deployments = by_kind.get("Deployment", {})
    worker = deployments.get("closeloop-worker")
    web = deployments.get("closeloop-web")
    if worker is None or web is None:
        return [*problems, f"want Deployments closeloop-worker and closeloop-web, found {sorted(deployments)}"]

    images = set()
    for doc in objects:
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        pod_security = spec.get("securityContext") or {}
        if pod_security.get("runAsNonRoot") is not True or pod_security.get("runAsUser", 0) == 0:
            problems.append(f"{where}: the pod does not run as a non-root user")
        mounted = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in mounted.values():
            if "configMap" in volume and volume["configMap"]["name"] not in by_kind.get("ConfigMap", {}):
                problems.append(f"{where}: ConfigMap {volume['configMap']['name']} does not exist")
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in by_kind.get("PersistentVolumeClaim", {}):
                problems.append(f"{where}: PersistentVolumeClaim {claim} does not exist")
        for container in containers_of(doc, init=True):
            cwhere = f"{where} container {container['name']}"
            images.add(container["image"])
            security = container.get("securityContext") or {}
            if security.get("allowPrivilegeEscalation") is not False or security.get("readOnlyRootFilesystem") \
                    is not True or "ALL" not in (security.get("capabilities") or {}).get("drop", []):
                problems.append(f"{cwhere}: not locked down (allowPrivilegeEscalation, readOnlyRootFilesystem, "
                                "capabilities)")
            resources_ = container.get("resources") or {}
            if not {"cpu", "memory"} <= set(resources_.get("requests") or {}) or \
                    "memory" not in (resources_.get("limits") or {}):
                problems.append(f"{cwhere}: no cpu and memory requests and memory limit")
            for env in container.get("env", []):
                if SECRETISH.search(env["name"]) and "value" in env:
                    problems.append(f"{cwhere}: {env['name']} is inlined (use a secretKeyRef)")
            refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
            if refs != ["closeloop-secrets"]:
                problems.append(f"{cwhere}: does not reference the Secret closeloop-secrets")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in mounted:
                    problems.append(f"{cwhere}: mounts an undefined volume {mount['name']}")
        if doc["kind"] == "Deployment":
            for container in containers_of(doc):
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in container:
                        problems.append(f"{where} container {container['name']}: no {probe}")
    if len(images) != 1:
        problems.append(f"the containers run different images: {sorted(images)}")

    def args_of(doc: dict[str, Any], *, init: bool) -> list[list[str]]:
        spec = pod_spec(doc) or {}
        return [c.get("args", []) for c in spec.get("initContainers" if init else "containers", [])]

    if worker["spec"].get("replicas", 1) < 2 or args_of(worker, init=False) != [["worker"]]:
        problems.append("the worker Deployment does not run two `closeloop worker`")
    if ["db", "upgrade"] not in args_of(worker, init=True):
        problems.append("the worker pods do not run `closeloop db upgrade` as an init container")
    if args_of(web, init=False) != [["serve"]]:
        problems.append("the web Deployment does not run `closeloop serve`")
    jobs = by_kind.get("Job", {})
    if not any(args_of(job, init=False) == [["db", "upgrade"]] for job in jobs.values()):
        problems.append("no Job runs `closeloop db upgrade`")

    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    web_labels = web["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    pdbs = [p for p in by_kind.get("PodDisruptionBudget", {}).values()
            if selects(p["spec"]["selector"].get("matchLabels", {}), worker_labels)]
    if not pdbs or any(selects(p["spec"]["selector"].get("matchLabels", {}), web_labels) for p in pdbs):
        problems.append("no PodDisruptionBudget selects the worker pods (and only them)")
    hpas = [h for h in by_kind.get("HorizontalPodAutoscaler", {}).values()
            if h["apiVersion"] == "autoscaling/v2" and h["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "closeloop-worker"}]
    if not hpas or any(h["spec"].get("minReplicas", 1) < 2 for h in hpas):
        problems.append("no autoscaling/v2 HorizontalPodAutoscaler scales closeloop-worker from at least 2")
    services = [s for s in by_kind.get("Service", {}).values() if selects(s["spec"].get("selector", {}),
                                                                          web_labels)]
    ports = {p["name"] for c in containers_of(web) for p in c.get("ports", [])}
    if not services or any(p["targetPort"] not in ports for s in services for p in s["spec"]["ports"]):
        problems.append("no Service in front of the web pods' named port")
    config = by_kind.get("ConfigMap", {}).get("closeloop-config", {}).get("data", {}).get("closeloop.toml")
    if config is None:
        problems.append("no ConfigMap closeloop-config with closeloop.toml")
    else:
        problems += config_problems(config, tmp_path)

    # The worker serves /healthz and /readyz on its telemetry port, the web app on its own: probed there, and the
    # worker listens on the pod's address (not the default loopback), or neither the kubelet nor Prometheus reach it.
    configmaps = by_kind.get("ConfigMap", {})
    for container in containers_of(worker):
        cwhere = f"Deployment/closeloop-worker container {container['name']}"
        problems += http_probe_problems(container, WORKER_PORT, cwhere)
        env = plain_env(container, configmaps)
        host = env.get("CLOSELOOP_METRICS_HOST")
        if host is None and config is not None:
            host = tomllib.loads(config).get("telemetry", {}).get("worker_host")
        if host not in ("0.0.0.0", "::"):
            problems.append(f"{cwhere}: serves its metrics and health checks on {host or '127.0.0.1'}, not the pod's "
                            "address (CLOSELOOP_METRICS_HOST=0.0.0.0)")
        if env.get("CLOSELOOP_METRICS_PORT", str(WORKER_PORT)) != str(WORKER_PORT):
            problems.append(f"{cwhere}: CLOSELOOP_METRICS_PORT is not {WORKER_PORT}")
    for container in containers_of(web):
        problems += http_probe_problems(container, WEB_PORT, f"Deployment/closeloop-web container {container['name']}")

    # The metrics token reaches the worker and the web app from the Secret: a secretKeyRef, or envFrom of the Secret
    # whose example lists the key; never a ConfigMap's value (nor an inlined one: above).
    for name, configmap in configmaps.items():
        for key in sorted(k for k in configmap.get("data") or {} if SECRETISH.search(k)):
            problems.append(f"ConfigMap/{name} holds {key} (a secret: put it in the Secret closeloop-secrets)")
    example = folder / "secret.example.yaml"
    example_keys = set(load_all_yaml(example)[0].get("stringData") or {}) if example.exists() else set()
    for doc in (worker, web):
        for container in containers_of(doc):
            if metrics_token_source(container, example_keys) is None:
                problems.append(f"Deployment/{doc['metadata']['name']} container {container['name']}: does not get "
                                f"{METRICS_TOKEN} from the Secret closeloop-secrets")
    return problems


def metrics_token_source(container: dict[str, Any], secret_keys: set[str]) -> str | None:
    """Where the container's CLOSELOOP_METRICS_TOKEN comes from: `secretKeyRef`, or `envFrom` (the Secret
    closeloop-secrets, which holds the key); None when from nowhere, or not from the Secret."""
    for env in container.get("env", []):
        if env["name"] == METRICS_TOKEN:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            return "secretKeyRef" if ref.get("name") == "closeloop-secrets" and ref.get("key") else None
    secrets_ = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    return "envFrom" if "closeloop-secrets" in secrets_ and METRICS_TOKEN in secret_keys else None


def test_kubernetes_manifests_are_valid_and_follow_the_rules(tmp_path: Path) -> None:
    assert kubernetes_problems(DEPLOY / "kubernetes", tmp_path) == []

    broken = copy_deploy(tmp_path) / "kubernetes"

    def invalid(docs: list[dict[str, Any]]) -> None:
        docs[0]["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathz"] = "/x"
    rewrite_yaml(broken / "worker.yaml", invalid)
    assert any("pathz" in p for p in kubernetes_problems(broken, tmp_path))

    shutil.copy(DEPLOY / "kubernetes" / "worker.yaml", broken / "worker.yaml")

    def rules(docs: list[dict[str, Any]]) -> None:
        worker, pdb, hpa = docs
        spec = worker["spec"]["template"]["spec"]
        del spec["containers"][0]["livenessProbe"]
        del spec["initContainers"]
        spec["securityContext"]["runAsUser"] = 0
        spec["containers"][0]["env"] = [{"name": "CLOSELOOP_API_TOKENS", "value": "s3cret"}]
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "web"
        hpa["spec"]["scaleTargetRef"]["name"] = "closeloop-web"
    rewrite_yaml(broken / "worker.yaml", rules)
    found = kubernetes_problems(broken, tmp_path)
    for expected in ("no livenessProbe", "init container", "non-root", "CLOSELOOP_API_TOKENS is inlined",
                     "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert any(expected in p for p in found), (expected, found)

    shutil.copy(DEPLOY / "kubernetes" / "worker.yaml", broken / "worker.yaml")
    kustomization = (broken / "kustomization.yaml").read_text()
    (broken / "kustomization.yaml").write_text(kustomization.replace("  - web.yaml\n",
                                                                     "  - web.yaml\n  - secret.example.yaml\n"))
    assert any("Secret values" in p for p in kubernetes_problems(broken, tmp_path))

    (broken / "kustomization.yaml").write_text(kustomization + "commonLabels:\n  team: sre\n")
    assert any("does not render ['commonLabels']" in p for p in kubernetes_problems(broken, tmp_path))

    (broken / "kustomization.yaml").write_text(kustomization)
    config = (broken / "configmap.yaml").read_text()
    (broken / "configmap.yaml").write_text(config.replace('default_owner = "oncall"', 'default_owner = 7'))
    assert any("closeloop.toml" in p for p in kubernetes_problems(broken, tmp_path))

    def probes(docs: list[dict[str, Any]]) -> None:
        container = docs[0]["spec"]["template"]["spec"]["containers"][0]
        container["readinessProbe"] = {"exec": {"command": ["closeloop-healthcheck", "worker"]}}
        container["livenessProbe"]["httpGet"]["path"] = "/metrics"
        container["startupProbe"]["httpGet"]["port"] = 8080
    shutil.copy(DEPLOY / "kubernetes" / "configmap.yaml", broken / "configmap.yaml")
    rewrite_yaml(broken / "worker.yaml", probes)
    found = kubernetes_problems(broken, tmp_path)
    for expected in ("readinessProbe is not an httpGet of /readyz", "livenessProbe asks /metrics on metrics",
                     "startupProbe asks /healthz on 8080"):
        assert any(expected in p for p in found), (expected, found)

    def web_ready(docs: list[dict[str, Any]]) -> None:
        docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/healthz"
    shutil.copy(DEPLOY / "kubernetes" / "worker.yaml", broken / "worker.yaml")
    rewrite_yaml(broken / "web.yaml", web_ready)
    assert any("closeloop-web container web: readinessProbe asks /healthz" in p
               for p in kubernetes_problems(broken, tmp_path))

    # The worker on loopback: neither the ConfigMap's environment nor closeloop.toml puts it on the pod's address.
    shutil.copy(DEPLOY / "kubernetes" / "web.yaml", broken / "web.yaml")
    (broken / "configmap.yaml").write_text(config.replace("  CLOSELOOP_METRICS_HOST: 0.0.0.0\n", "")
                                           .replace('worker_host = "0.0.0.0"', 'worker_host = "127.0.0.1"'))
    assert any("not the pod's address" in p for p in kubernetes_problems(broken, tmp_path))

    # The metrics token: in a ConfigMap, inlined, or missing from the Secret the containers read
    port = '  CLOSELOOP_WEB_PORT: "8080"\n'
    (broken / "configmap.yaml").write_text(config.replace(port, port + "  CLOSELOOP_METRICS_TOKEN: x\n"))
    assert any("ConfigMap/closeloop-env holds CLOSELOOP_METRICS_TOKEN" in p
               for p in kubernetes_problems(broken, tmp_path))
    shutil.copy(DEPLOY / "kubernetes" / "configmap.yaml", broken / "configmap.yaml")

    def inlined(docs: list[dict[str, Any]]) -> None:
        docs[0]["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "CLOSELOOP_METRICS_TOKEN",
                                                                        "value": "s3cret"}]
    rewrite_yaml(broken / "web.yaml", inlined)
    found = kubernetes_problems(broken, tmp_path)
    assert any("container web: CLOSELOOP_METRICS_TOKEN is inlined" in p for p in found), found
    assert any("closeloop-web container web: does not get CLOSELOOP_METRICS_TOKEN from the Secret" in p
               for p in found), found
    shutil.copy(DEPLOY / "kubernetes" / "web.yaml", broken / "web.yaml")
    example = (broken / "secret.example.yaml").read_text()
    (broken / "secret.example.yaml").write_text(re.sub(r"\n  CLOSELOOP_METRICS_TOKEN: .*", "", example))
    found = kubernetes_problems(broken, tmp_path)
    assert any("closeloop-worker container worker: does not get CLOSELOOP_METRICS_TOKEN" in p for p in found), found


def podmonitor_problems(folder: Path) -> list[str]:
    """kubernetes/podmonitor.yaml, the optional PodMonitors for the Prometheus Operator (a CRD kubernetes-validate
    does not know, so checked here and kept out of kustomization.yaml): one per Deployment, each endpoint a named
    port of the pods it selects that serves /metrics (9464 for the worker, 8080 for the web app), with the bearer
    token from the Secret closeloop-secrets."""
    path = folder / "podmonitor.yaml"
    try:
        monitors = load_all_yaml(path)
    except (OSError, yaml.YAMLError) as e:
        return [f"podmonitor.yaml: {e}"]
    problems: list[str] = []
    if "podmonitor.yaml" in load_yaml(folder / "kustomization.yaml")["resources"]:
        problems.append("podmonitor.yaml is a resource of kustomization.yaml (its CRD is not in every cluster)")
    deployments = {d["metadata"]["name"]: d for d in render_kustomization(folder) if d["kind"] == "Deployment"}
    wanted = {"closeloop-worker": WORKER_PORT, "closeloop-web": WEB_PORT}
    covered: set[str] = set()
    for monitor in monitors:
        where = f"PodMonitor/{monitor.get('metadata', {}).get('name')}"
        if (monitor.get("apiVersion"), monitor.get("kind")) != ("monitoring.coreos.com/v1", "PodMonitor"):
            problems.append(f"{where}: not a monitoring.coreos.com/v1 PodMonitor")
            continue
        selector = monitor["spec"].get("selector", {}).get("matchLabels") or {}
        selected = [name for name, d in deployments.items() if selector and all(
            d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        if len(selected) != 1 or selected[0] not in wanted:
            problems.append(f"{where}: selects {selected}, want the pods of one of {sorted(wanted)}")
            continue
        covered.add(selected[0])
        containers = list(containers_of(deployments[selected[0]]))
        for endpoint in monitor["spec"].get("podMetricsEndpoints") or [{}]:
            ports = {container_port(c, endpoint.get("port", "")) for c in containers} - {None}
            if ports != {wanted[selected[0]]}:
                problems.append(f"{where}: port {endpoint.get('port')!r} is not the pods' {wanted[selected[0]]}")
            if endpoint.get("path", "/metrics") != "/metrics":
                problems.append(f"{where}: path {endpoint.get('path')} is not /metrics")
            auth = endpoint.get("authorization") or {}
            credentials = auth.get("credentials") or {}
            if auth.get("type", "Bearer") != "Bearer" or credentials != {"name": "closeloop-secrets",
                                                                           "key": METRICS_TOKEN}:
                problems.append(f"{where}: no bearer token from the Secret closeloop-secrets, key {METRICS_TOKEN}")
    for name in sorted(set(wanted) - covered):
        problems.append(f"no PodMonitor scrapes {name}")
    return problems


def test_the_optional_podmonitors_scrape_both_with_the_token(tmp_path: Path) -> None:
    assert podmonitor_problems(DEPLOY / "kubernetes") == []

    broken = copy_deploy(tmp_path) / "kubernetes"

    def breakage(docs: list[dict[str, Any]]) -> None:
        worker, web = docs
        worker["spec"]["podMetricsEndpoints"][0]["port"] = "http"
        del worker["spec"]["podMetricsEndpoints"][0]["authorization"]
        web["spec"]["podMetricsEndpoints"][0]["authorization"]["credentials"]["key"] = "CLOSELOOP_API_TOKENS"
    rewrite_yaml(broken / "podmonitor.yaml", breakage)
    found = podmonitor_problems(broken)
    for expected in ("PodMonitor/closeloop-worker: port 'http' is not the pods' 9464",
                     "PodMonitor/closeloop-worker: no bearer token", "PodMonitor/closeloop-web: no bearer token"):
        assert any(expected in p for p in found), (expected, found)

    def one_gone(docs: list[dict[str, Any]]) -> None:
        docs[1]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "migrate"
    shutil.copy(DEPLOY / "kubernetes" / "podmonitor.yaml", broken / "podmonitor.yaml")
    rewrite_yaml(broken / "podmonitor.yaml", one_gone)
    kustomization = (broken / "kustomization.yaml").read_text()
    (broken / "kustomization.yaml").write_text(kustomization.replace("  - web.yaml\n",
                                                                     "  - web.yaml\n  - podmonitor.yaml\n"))
    found = podmonitor_problems(broken)
    assert any("no PodMonitor scrapes closeloop-web" in p for p in found), found
    assert any("podmonitor.yaml is a resource of kustomization.yaml" in p for p in found), found


def test_the_secret_example_is_marked_and_holds_no_real_value() -> None:
    text = (DEPLOY / "kubernetes" / "secret.example.yaml").read_text()
    assert text.startswith("# EXAMPLE ONLY")
    (secret,) = load_all_yaml(DEPLOY / "kubernetes" / "secret.example.yaml")
    assert all("EXAMPLE" in value for value in secret["stringData"].values())
    assert "secret.example.yaml" not in load_yaml(DEPLOY / "kubernetes" / "kustomization.yaml")["resources"]


def test_the_container_config_passes_config_check(tmp_path: Path) -> None:
    assert config_problems((DEPLOY / "closeloop.toml").read_text(), tmp_path) == []
    assert config_problems('[temporal]\naddress = "no-port"\n', tmp_path) != []


# --------------------------------------------------------------------------------------------------- Dockerfile

def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (its last matching pattern, on the path or a
    parent folder, decides)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if any(fnmatch.fnmatchcase(c, body) or (body.startswith("**/") and fnmatch.fnmatchcase(c, body[3:]))
               or body == "**" for c in candidates):
            ignored = not negate
    return ignored


def dockerfile_problems(path: Path, context: Path) -> list[str]:
    parser = DockerfileParser(path=str(path))
    instructions = parser.structure
    problems: list[str] = []
    froms = [i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM"]
    if len(froms) < 2:
        problems.append(f"want a multi-stage build, found {len(froms)} stage(s)")
    for index in froms:
        image = instructions[index]["value"].split()[0]
        if not PINNED.match(image) or image.split(":")[1].startswith("latest"):
            problems.append(f"FROM {image}: not pinned to an exact version")
        elif not re.search(r":\d+\.\d+\.\d+", image) and "@sha256:" not in image:
            problems.append(f"FROM {image}: pin the patch release (or a digest)")
    final = instructions[froms[-1]:] if froms else instructions

    def last(name: str) -> dict[str, Any] | None:
        found = [ins for ins in final if ins["instruction"] == name]
        return found[-1] if found else None

    user = last("USER")
    if user is None:
        problems.append("the final stage sets no USER (it would run as root)")
    else:
        uid = user["value"].split(":")[0].strip()
        if not uid.isdigit() or int(uid) == 0:
            problems.append(f"USER {user['value']}: want a numeric non-root uid")
    healthcheck = last("HEALTHCHECK")
    if healthcheck is None or healthcheck["value"].strip().upper() == "NONE":
        problems.append("the final stage has no HEALTHCHECK")
    entrypoint = last("ENTRYPOINT")
    if entrypoint is None or json.loads(entrypoint["value"]) != ["closeloop"]:
        problems.append('want ENTRYPOINT ["closeloop"]')
    patterns = [line.strip() for line in (context / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")] if (context / ".dockerignore").exists() else []
    if not patterns:
        problems.append("no .dockerignore: the whole tree would be sent to the build")
    for ins in instructions:
        words = ins["value"].split()
        if ins["instruction"] == "ADD" and any(re.match(r"^(https?|git)://|^git@", w) for w in words):
            problems.append(f"ADD of a remote URL: {ins['value']}")
        if ins["instruction"] in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", ins["value"])
            problems += [f"{ins['instruction']} {n}: a secret must not be baked into the image"
                         for n in names if SECRETISH.search(n.upper())]
        if ins["instruction"] == "COPY" and not any(w.startswith("--from") for w in words):
            sources = [w for w in words if not w.startswith("--")][:-1]
            for source in sources:
                if not (context / source).exists():
                    problems.append(f"COPY {source}: not in the build context")
                elif dockerignored(source.rstrip("/"), patterns):
                    problems.append(f"COPY {source}: excluded by .dockerignore")
    return problems


def test_dockerfile_follows_the_rules(tmp_path: Path) -> None:
    assert dockerfile_problems(DEPLOY / "Dockerfile", ROOT) == []

    text = (DEPLOY / "Dockerfile").read_text()
    broken = tmp_path / "Dockerfile"
    runtime = text.index("FROM python:3.11.11-slim-bookworm AS runtime")
    broken.write_text(text[runtime:].replace("FROM python:3.11.11-slim-bookworm", "FROM python:3-slim")
                      .replace("USER 10001:10001", "USER root")
                      .replace('ENTRYPOINT ["closeloop"]', 'ENTRYPOINT ["python"]')
                      .replace("HEALTHCHECK --interval", "# HEALTHCHECK --interval")
                      + "ENV CLOSELOOP_API_TOKENS=s3cret\nADD https://example.com/x.tar.gz /opt/\n"
                      + "COPY --from=builder /opt/closeloop /opt/closeloop\n")
    found = dockerfile_problems(broken, ROOT)
    for expected in ("multi-stage", "FROM python:3-slim", "USER root", "ENTRYPOINT", "HEALTHCHECK",
                     "ENV CLOSELOOP_API_TOKENS", "ADD of a remote URL"):
        assert any(expected in p for p in found), (expected, found)

    context = tmp_path / "context"
    context.mkdir()
    (context / ".dockerignore").write_text("**\n!pyproject.toml\n")
    (context / "pyproject.toml").write_text("")
    (context / "closeloop").mkdir()
    found = dockerfile_problems(DEPLOY / "Dockerfile", context)
    assert any("COPY closeloop: excluded by .dockerignore" in p for p in found), found
    assert any("COPY workflows: not in the build context" in p for p in found), found


def test_the_dockerignore_matcher() -> None:
    patterns = ["**", "!closeloop/", "**/__pycache__"]
    assert dockerignored("tests/x.py", patterns)
    assert not dockerignored("closeloop/cli/main.py", patterns)
    assert dockerignored("closeloop/cli/__pycache__", patterns)


# ----------------------------------------------------------------------------------- dashboard and Prometheus

def metrics_contract(readme: Path = DEPLOY / "README.md") -> dict[str, str]:
    """metric name -> type, from the table under deploy/README.md's "## Metrics"."""
    section = readme.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", section, re.M))


def series_names(name: str, kind: str) -> set[str]:
    return {name} | ({f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set())


def dashboard_problems(path: Path, contract: dict[str, str]) -> list[str]:
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        return [f"{path.name}: not JSON: {e}"]
    allowed = set().union(*(series_names(n, k) for n, k in contract.items()))
    datasources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    uids = {d["uid"] for d in datasources["datasources"]}
    problems: list[str] = []
    used: set[str] = set()
    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    if not panels:
        problems.append("the dashboard has no panels")
    for panel in panels:
        where = f"panel {panel.get('title')!r}"
        if (panel.get("datasource") or {}).get("uid") not in uids:
            problems.append(f"{where}: its datasource is not the provisioned one ({sorted(uids)})")
        if not panel.get("targets"):
            problems.append(f"{where}: no query")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            names = set(re.findall(r"\b((?:closeloop|temporal)_[a-z0-9_]+)\b", expr))
            if not names:
                problems.append(f"{where}: {expr!r} uses no closeloop or Temporal metric")
            for name in sorted(names - allowed):
                problems.append(f"{where}: {name} is not in deploy/README.md's metrics contract")
            used |= {n for n in contract if series_names(n, contract[n]) & names}
            if expr.count("(") != expr.count(")"):
                problems.append(f"{where}: unbalanced parentheses in {expr!r}")
    for name in sorted(n for n in contract if n not in used):
        problems.append(f"{name}: in the contract, on no panel")
    return problems


def test_the_dashboard_queries_only_the_documented_metrics(tmp_path: Path) -> None:
    contract = metrics_contract()
    for name in ("closeloop_lifecycles", "closeloop_stalled_postmortems", "closeloop_overdue_items",
                 "closeloop_notifications_total", "closeloop_tracker_calls_total",
                 "closeloop_tracker_rate_limit_waits_total", "closeloop_webhook_seconds",
                 "temporal_workflow_task_schedule_to_start_latency"):
        assert name in contract
    assert contract["closeloop_webhook_seconds"] == "histogram"
    dashboard = DEPLOY / "grafana" / "dashboards" / "closeloop.json"
    assert dashboard_problems(dashboard, contract) == []

    data = json.loads(dashboard.read_text())
    panels = [p for p in data["panels"] if p["type"] != "row"]
    panels[0]["targets"][0]["expr"] = "sum(closeloop_lifecycle_count)"
    panels[1]["datasource"] = {"type": "prometheus", "uid": "elsewhere"}
    broken = tmp_path / "closeloop.json"
    broken.write_text(json.dumps(data))
    found = dashboard_problems(broken, contract)
    assert any("closeloop_lifecycle_count is not in" in p for p in found), found
    assert any("closeloop_lifecycles: in the contract, on no panel" in p for p in found), found
    assert any("datasource" in p for p in found), found
    broken.write_text("{")
    assert dashboard_problems(broken, contract) != []


def prometheus_problems(path: Path, compose: Path) -> list[str]:
    try:
        config = load_yaml(path)
    except yaml.YAMLError as e:
        return [f"{path.name}: not YAML: {e}"]
    services = load_yaml(compose)["services"]
    problems: list[str] = []
    targets: dict[str, set[str]] = {}
    for job in config.get("scrape_configs") or []:
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], set()).update(static.get("targets", []))
        if job.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"{job['job_name']}: metrics_path is not /metrics")
    for job, hosts in targets.items():
        for host in hosts:
            if host.rsplit(":", 1)[0] not in services:
                problems.append(f"{job}: {host} is not a compose service")
    workers = [n for n, s in services.items() if s.get("command") == ["worker"]]
    if targets.get("closeloop-worker") != {f"{w}:9464" for w in workers}:
        problems.append(f"closeloop-worker should scrape every worker on 9464: {targets.get('closeloop-worker')}")
    if targets.get("closeloop-web") != {"web:8080"}:
        problems.append("closeloop-web should scrape web:8080")
    problems += prometheus_auth_problems(config, load_yaml(compose))
    return problems


def prometheus_auth_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """closeloop's /metrics need CLOSELOOP_METRICS_TOKEN as a bearer token: each closeloop job sends one read from a
    file (never written in prometheus.yml), and compose gives Prometheus that file from the same variable."""
    problems: list[str] = []
    prometheus = compose["services"].get("prometheus") or {}
    declared = compose.get("secrets") or {}
    files = {}  # path in the Prometheus container -> where compose takes it from
    for entry in prometheus.get("secrets") or []:
        source = entry if isinstance(entry, str) else entry["source"]
        target = f"/run/secrets/{source}" if isinstance(entry, str) else entry.get("target", f"/run/secrets/{source}")
        files[target if target.startswith("/") else f"/run/secrets/{target}"] = declared.get(source) or {}
    for job in config.get("scrape_configs") or []:
        if not job["job_name"].startswith("closeloop"):
            continue
        where = job["job_name"]
        auth = job.get("authorization") or {}
        if "bearer_token" in job or "credentials" in auth:
            problems.append(f"{where}: the metrics token is written in prometheus.yml (use credentials_file)")
        if auth.get("type", "Bearer") != "Bearer" or not auth.get("credentials_file"):
            problems.append(f"{where}: no bearer authorization from a credentials_file")
            continue
        source = files.get(auth["credentials_file"])
        if source is None:
            problems.append(f"{where}: compose gives Prometheus no {auth['credentials_file']}")
        elif source.get("environment") != METRICS_TOKEN:
            problems.append(f"{where}: {auth['credentials_file']} is not {METRICS_TOKEN} (from deploy/.env)")
    return problems


def test_the_prometheus_config_scrapes_closeloop(tmp_path: Path) -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    assert prometheus_problems(config, DEPLOY / "compose.yaml") == []
    broken = tmp_path / "prometheus.yml"
    broken.write_text(config.read_text().replace('"worker-2:9464"', '"worker-3:9100"'))
    found = prometheus_problems(broken, DEPLOY / "compose.yaml")
    assert any("worker-3:9100 is not a compose service" in p for p in found), found
    broken.write_text("scrape_configs: [")
    assert prometheus_problems(broken, DEPLOY / "compose.yaml") != []


def test_prometheus_sends_the_metrics_token(tmp_path: Path) -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    compose = load_yaml(DEPLOY / "compose.yaml")
    assert prometheus_auth_problems(config, compose) == []
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"closeloop-web", "closeloop-worker"} <= jobs.keys()

    broken = copy.deepcopy(config)
    jobs = {job["job_name"]: job for job in broken["scrape_configs"]}
    del jobs["closeloop-worker"]["authorization"]
    jobs["closeloop-web"]["authorization"] = {"type": "Bearer", "credentials": "s3cret"}
    found = prometheus_auth_problems(broken, compose)
    assert any("closeloop-worker: no bearer authorization" in p for p in found), found
    assert any("closeloop-web: the metrics token is written in prometheus.yml" in p for p in found), found

    # The file Prometheus reads, not given to it, or from another variable
    unmounted = copy.deepcopy(compose)
    del unmounted["services"]["prometheus"]["secrets"]
    found = prometheus_auth_problems(config, unmounted)
    assert any("compose gives Prometheus no /etc/prometheus/metrics-token" in p for p in found), found
    other = copy.deepcopy(compose)
    other["secrets"]["metrics-token"] = {"environment": "CLOSELOOP_API_TOKENS"}
    assert any("is not CLOSELOOP_METRICS_TOKEN" in p for p in prometheus_auth_problems(config, other))

    # and the whole compose file, broken that way, still fails the Prometheus check
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(unmounted, sort_keys=False))
    assert any("compose gives Prometheus no" in p for p in prometheus_problems(DEPLOY / "prometheus" /
                                                                               "prometheus.yml", path))


def test_grafana_provisions_the_mounted_dashboard_folder() -> None:
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "closeloop.yaml")
    grafana = load_yaml(DEPLOY / "compose.yaml")["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == mounts["./grafana/dashboards"] + "/closeloop.json"


# --------------------------------------------------------------------------------------- Temporal and the rest

def temporal_values_problems(path: Path) -> list[str]:
    values = load_yaml(path)
    problems: list[str] = []
    persistence = values["server"]["config"]["persistence"]
    for store in ("default", "visibility"):
        config = persistence.get(store) or {}
        sql = config.get("sql") or {}
        if config.get("driver") != "sql" or sql.get("driver") != "postgres12":
            problems.append(f"{store} store: want driver sql with sql.driver postgres12")
        if "password" in sql or not sql.get("existingSecret"):
            problems.append(f"{store} store: the password must come from existingSecret")
        for key in ("host", "port", "database", "user"):
            if key not in sql:
                problems.append(f"{store} store: no sql.{key}")
    for dependency in ("cassandra", "elasticsearch", "mysql"):
        if (values.get(dependency) or {}).get("enabled") is not False:
            problems.append(f"{dependency} is not disabled")
    if not re.search(r"chart version \d+\.\d+\.\d+", path.read_text()):
        problems.append("no comment naming the chart version the keys follow")
    return problems


def test_the_temporal_helm_values_use_postgresql(tmp_path: Path) -> None:
    values = DEPLOY / "temporal-helm-values.yaml"
    assert temporal_values_problems(values) == []
    broken = tmp_path / "values.yaml"
    data = load_yaml(values)
    data["server"]["config"]["persistence"]["visibility"]["sql"]["driver"] = "mysql8"
    data["server"]["config"]["persistence"]["default"]["sql"]["password"] = "temporal"
    broken.write_text("# chart version 0.60.0\n" + yaml.safe_dump(data))
    found = temporal_values_problems(broken)
    assert any("visibility store: want driver sql" in p for p in found), found
    assert any("default store: the password" in p for p in found), found


def test_the_temporal_setup_registers_closeloops_search_attributes() -> None:
    from temporalio.common import SearchAttributeIndexedValueType as T

    from closeloop.search_attributes import ALL

    names = {T.KEYWORD: "Keyword", T.DATETIME: "Datetime", T.KEYWORD_LIST: "KeywordList", T.BOOL: "Bool",
             T.TEXT: "Text", T.INT: "Int", T.DOUBLE: "Double"}
    expected = {(key.name, names[key.indexed_value_type]) for key in ALL}
    for path in (DEPLOY / "temporal" / "setup.sh", DEPLOY / "README.md"):
        assert set(re.findall(r"\b(Closeloop\w+)=(\w+)", path.read_text())) == expected, path


def test_the_kubernetes_and_compose_images_are_the_dockerfiles() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]
    assert {s["build"]["dockerfile"] for s in closeloop_services(compose).values()} == {"deploy/Dockerfile"}
    rendered = render_kustomization(DEPLOY / "kubernetes")
    images = {c["image"] for doc in rendered for c in containers_of(doc, init=True)}
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and images == {f"{IMAGE}:{version.group(1)}"}


def test_the_renderer_applies_namespace_and_images() -> None:
    rendered = render_kustomization(DEPLOY / "kubernetes")
    namespaced = [d for d in rendered if d["kind"] not in CLUSTER_SCOPED]
    assert namespaced and all(d["metadata"]["namespace"] == "closeloop" for d in namespaced)
    raw = copy.deepcopy(load_all_yaml(DEPLOY / "kubernetes" / "worker.yaml"))
    assert raw[0]["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE  # before rendering


@pytest.mark.parametrize("name", ["compose.yaml", "temporal-helm-values.yaml", "prometheus/prometheus.yml",
                                  "grafana/provisioning/datasources/prometheus.yaml",
                                  "grafana/provisioning/dashboards/closeloop.yaml"])
def test_every_yaml_file_parses(name: str) -> None:
    assert load_all_yaml(DEPLOY / name)
