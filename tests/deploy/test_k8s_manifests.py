"""deploy/k8s/: kustomize (kubectl's own, `kubectl kustomize`) renders the example overlay,
with and without the in-cluster datastores component; every built-in object validates
strictly against the Kubernetes OpenAPI schemas of the oldest and newest version we support
(pip kubernetes-validate, which bundles them); KEDA's objects validate against models generated
from KEDA's CRD schemas (pip cloudcoil-models-keda), with no unknown field; then the
properties that matter: references resolve, HTTP on gunicorn (`web`) and /ws/ on uvicorn
(`ws`), probes, security contexts, singletons, GPU scheduling, autoscaling on the `runs` queue,
and agreement with deploy/vllm/ and models.yaml."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings

from tests.conftest import REPO, require_service

K8S = REPO / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "example"
DATASTORES = K8S / "components" / "in-cluster-datastores"
VLLM_DIR = REPO / "deploy" / "vllm"
MODELS = REPO / "deploy" / "models.yaml"
BASH = shutil.which("bash") or "/bin/bash"
# The oldest Kubernetes the manifests are for (docs/deploy.md) and the newest schemas known.
KUBERNETES_VERSIONS = ["1.29", "1.37"]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
# Where the containers get a writable emptyDir (a mount point, not a file of ours).
TMP = "/tmp"  # noqa: S108
APP_WORKLOADS = {"web", "ws", "worker-runs", "worker-ingest", "beat", "listener"}
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"


def kubectl() -> str | None:
    """kubectl with kustomize 5 (`kubectl kustomize`): KUBECTL, else the one on PATH."""
    path = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    if not path:
        return None
    result = subprocess.run(
        [path, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return None
    version = json.loads(result.stdout).get("kustomizeVersion", "")
    return path if re.match(r"v?([5-9]|\d{2,})\.", version) else None


@pytest.fixture(scope="module")
def kubectl_path() -> str:
    path = kubectl()
    require_service(path is not None, "kubectl with kustomize v5+ (kubectl kustomize)")
    assert path is not None
    return path


def render(kubectl_path: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl_path, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def copy_overlay(tmp_path: Path) -> Path:
    """The example overlay in a folder of its own, as a user copies it (its path to the base
    rewritten: kustomize takes no absolute paths)."""
    target = tmp_path / "overlay"
    shutil.copytree(OVERLAY, target)
    relative = os.path.relpath(K8S, target)
    kustomization = target / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8").replace("../..", relative)
    kustomization.write_text(text, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def objects(kubectl_path: str) -> list[dict[str, Any]]:
    return render(kubectl_path, OVERLAY)


@pytest.fixture(scope="module")
def with_datastores(
    kubectl_path: str, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    overlay = copy_overlay(tmp_path_factory.mktemp("datastores"))
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    text, count = re.subn(r"# components:\n#   - (\S+)", r"components:\n  - \1", text)
    assert count == 1, "the overlay's commented components: block changed"
    kustomization.write_text(text, encoding="utf-8")
    return render(kubectl_path, overlay)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def base_name(name: str) -> str:
    """A generated name without kustomize's hash suffix."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


# --- schemas ------------------------------------------------------------------------------


def _validate_all(objects: list[dict[str, Any]]) -> list[str]:
    kubernetes_validate = import_or_require("kubernetes_validate", "pip kubernetes-validate")
    errors = []
    for version in KUBERNETES_VERSIONS:
        for obj in objects:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                if not obj["apiVersion"].startswith("keda.sh/"):
                    errors.append(f"{version} {name}: no schema for {obj['apiVersion']}")
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                errors.append(f"{version} {name}: {where}: {exc.message}")
    return errors


def test_every_object_validates_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]],
) -> None:
    assert _validate_all(objects) == []


def test_with_in_cluster_datastores_too(with_datastores: list[dict[str, Any]]) -> None:
    assert _validate_all(with_datastores) == []
    statefulsets = by_kind(with_datastores, "StatefulSet")
    assert {"chroma", "postgres", "redis"} <= set(statefulsets)
    secret = next(iter(by_kind(with_datastores, "Secret")))
    for name in ("postgres", "redis"):
        assert statefulsets[name]["metadata"]["namespace"] == "assistant-studio"
        env = statefulsets[name]["spec"]["template"]["spec"]["containers"][0]["env"]
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e]
        assert refs == [secret], name
    assert {"postgres", "redis"} <= set(by_kind(with_datastores, "Service"))
    check_references(with_datastores)


def test_the_schema_validation_rejects_a_mistake(objects: list[dict[str, Any]]) -> None:
    web = json.loads(json.dumps(by_kind(objects, "Deployment")["web"]))
    web["spec"]["template"]["spec"]["containers"][0]["readinessProbee"] = {}
    assert len(_validate_all([web])) == len(KUBERNETES_VERSIONS)


def import_or_require(module: str, what: str) -> Any:
    """The module, or a skip (a failure under CI=true) naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        require_service(False, what)
        raise


def _keda_model(kind: str) -> Any:
    keda = import_or_require("cloudcoil.models.keda.v1alpha1", "pip cloudcoil-models-keda")
    return getattr(keda, kind)


@pytest.mark.parametrize("kind", ["ScaledObject", "TriggerAuthentication"])
def test_keda_objects_validate_against_the_crd_models(
    objects: list[dict[str, Any]], kind: str
) -> None:
    """Types, enums and required fields come from KEDA's CRD schema; a round trip that loses
    nothing shows that no field is unknown to it (the models ignore unknown fields)."""
    import pydantic

    model = _keda_model(kind)
    found = by_kind(objects, kind)
    assert found
    for name, obj in found.items():
        try:
            parsed = model.model_validate(obj)
        except pydantic.ValidationError as exc:
            pytest.fail(f"{kind}/{name}: {exc}")
        assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj, name


def test_the_keda_models_reject_a_mistake(objects: list[dict[str, Any]]) -> None:
    import pydantic

    model = _keda_model("ScaledObject")
    scaled = json.loads(json.dumps(by_kind(objects, "ScaledObject")["worker-runs"]))
    scaled["spec"]["minReplicaCount"] = "one"
    with pytest.raises(pydantic.ValidationError):
        model.model_validate(scaled)
    scaled["spec"]["minReplicaCount"] = 1
    scaled["spec"]["maxReplicas"] = 3  # HPA's name, not KEDA's
    dumped = model.model_validate(scaled).model_dump(by_alias=True, exclude_unset=True)
    assert dumped != scaled


# --- references ---------------------------------------------------------------------------


def _check_pod_references(objects: list[dict[str, Any]]) -> None:
    configmaps = by_kind(objects, "ConfigMap")
    secrets = by_kind(objects, "Secret")
    claims = set(by_kind(objects, "PersistentVolumeClaim"))
    accounts = set(by_kind(objects, "ServiceAccount"))
    claim_templates = {
        id(o["spec"]["template"]["spec"]): {
            t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])
        }
        for o in objects
        if o["kind"] == "StatefulSet"
    }
    for where, spec in pod_specs(objects):
        assert spec.get("serviceAccountName", "assistant-studio") in accounts, where
        volumes = {v["name"] for v in spec.get("volumes", [])} | claim_templates.get(
            id(spec), set()
        )
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        for container in containers(spec):
            for source in container.get("envFrom", []):
                name = (source.get("configMapRef") or source.get("secretRef"))["name"]
                assert name in (configmaps if "configMapRef" in source else secrets), where
            refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
            for ref in refs:
                assert ref["name"] in secrets, where
                if not ref.get("optional"):
                    assert ref["key"] in secrets[ref["name"]]["data"], (where, ref["key"])
            assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes, where


def _check_selectors(objects: list[dict[str, Any]]) -> None:
    templates = [
        (o["spec"]["template"]["metadata"]["labels"], o)
        for o in objects
        if o["kind"] in WORKLOAD_KINDS
    ]

    def matching(selector: dict[str, str]) -> list[dict[str, Any]]:
        return [o for labels, o in templates if selector.items() <= labels.items()]

    for name, service in by_kind(objects, "Service").items():
        (workload,) = matching(service["spec"]["selector"])
        ports = {
            p["name"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (name, port)
    for name, pdb in by_kind(objects, "PodDisruptionBudget").items():
        assert len(matching(pdb["spec"]["selector"]["matchLabels"])) == 1, name
    for workload in (o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def _check_routes_and_scalers(objects: list[dict[str, Any]]) -> None:
    services = by_kind(objects, "Service")
    for name, ingress in by_kind(objects, "Ingress").items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service_ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in service_ports, name
    deployments = by_kind(objects, "Deployment")
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, scaler in by_kind(objects, kind).items():
            assert scaler["spec"]["scaleTargetRef"]["name"] in deployments, name
    secrets = by_kind(objects, "Secret")
    for name, auth in by_kind(objects, "TriggerAuthentication").items():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["data"], name


def check_references(objects: list[dict[str, Any]]) -> None:
    """Every name a pod, Service, Ingress, PDB or autoscaler uses names an object here."""
    _check_pod_references(objects)
    _check_selectors(objects)
    _check_routes_and_scalers(objects)


def test_every_reference_resolves(objects: list[dict[str, Any]]) -> None:
    check_references(objects)


def test_generated_config_and_secret_are_referenced_by_their_hashed_names(
    objects: list[dict[str, Any]],
) -> None:
    (configmap,) = by_kind(objects, "ConfigMap")
    (secret,) = by_kind(objects, "Secret")
    assert base_name(configmap) == "assistant-studio-config" != configmap
    assert base_name(secret) == "assistant-studio-secrets" != secret


def test_everything_lands_in_the_namespace(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "assistant-studio"
            assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert obj["metadata"]["namespace"] == "assistant-studio", obj["metadata"]["name"]


def test_example_secret_holds_only_placeholders(objects: list[dict[str, Any]]) -> None:
    import base64

    (secret,) = by_kind(objects, "Secret").values()
    for key, encoded in secret["data"].items():
        value = base64.b64decode(encoded).decode()
        assert value == "" or "REPLACE_ME" in value, key


# --- workloads ----------------------------------------------------------------------------


def test_the_workloads(objects: list[dict[str, Any]]) -> None:
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) == APP_WORKLOADS | {"vllm-chat", "vllm-embed"}
    assert set(by_kind(objects, "StatefulSet")) == {"chroma"}
    (job,) = by_kind(objects, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["init"]
    image = container["image"]
    assert image == "registry.example.com/assistant-studio:0.1.0"
    for name in APP_WORKLOADS:
        spec = deployments[name]["spec"]["template"]["spec"]
        (main,) = spec["containers"]
        assert main["image"] == image, name
        assert main["args"] == [name], name
        # Each waits for the init Job's migrations before starting.
        (wait,) = spec["initContainers"]
        assert wait["name"] == "wait-for-migrations"
        assert "migrate --check" in " ".join(wait["args"])
    chroma = by_kind(objects, "StatefulSet")["chroma"]
    assert chroma["spec"]["template"]["spec"]["containers"][0]["args"] == ["chroma"]
    (claim,) = chroma["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_beat_and_listener_are_singletons(objects: list[dict[str, Any]]) -> None:
    deployments = by_kind(objects, "Deployment")
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for p in
            by_kind(objects, "PodDisruptionBudget").values()}  # fmt: skip
    for name in ("beat", "listener"):
        assert deployments[name]["spec"]["replicas"] == 1, name
        assert deployments[name]["spec"]["strategy"] == {"type": "Recreate"}, name
        assert name not in pdbs
    autoscaled = {
        s["spec"]["scaleTargetRef"]["name"]
        for kind in ("HorizontalPodAutoscaler", "ScaledObject")
        for s in by_kind(objects, kind).values()
    }
    assert not {"beat", "listener"} & autoscaled
    # Autoscaled Deployments leave the count to their autoscaler.
    for name in autoscaled:
        assert "replicas" not in deployments[name]["spec"], name
    assert {"web", "ws", "worker-runs", "worker-ingest", "vllm-chat"} <= pdbs


def test_pods_run_unprivileged_with_read_only_roots_and_limits(
    objects: list[dict[str, Any]], with_datastores: list[dict[str, Any]]
) -> None:
    for where, spec in pod_specs(with_datastores):
        # Service links would put VLLM_CHAT_PORT (a vLLM-looking name) and CHROMA_PORT (ours)
        # into every pod's environment.
        assert spec["enableServiceLinks"] is False, where
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            name = f"{where}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert resources["requests"]["cpu"], name
            assert resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name
            if container["name"] == "vllm":
                continue  # documented in vllm-*.yaml: its libraries write caches anywhere
            assert security["readOnlyRootFilesystem"] is True, name
            if where.split("/")[1] not in {"redis"}:
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == TMP]
                assert tmp, f"{name}: no writable /tmp"
                assert "emptyDir" in volumes[tmp[0]["name"]], name
    image_user = re.search(r"(?m)^USER (\d+)", (REPO / "deploy" / "Dockerfile").read_text())
    assert image_user
    for where, spec in pod_specs(objects):
        if spec["containers"][0]["image"].startswith("registry.example.com/assistant-studio"):
            assert spec["securityContext"]["runAsUser"] == int(image_user[1]), where


def test_web_probes_and_public_host(objects: list[dict[str, Any]]) -> None:
    (configmap,) = by_kind(objects, "ConfigMap").values()
    host = configmap["data"]["DJANGO_ALLOWED_HOSTS"]
    assert configmap["data"]["SITE_URL"] == f"https://{host}"
    # gunicorn (web) and uvicorn (ws) both answer Django's health views over HTTP.
    for name in ("web", "ws"):
        deployment = by_kind(objects, "Deployment")[name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "http", (name, probe)
            headers = container[probe]["httpGet"]["httpHeaders"]
            assert headers == [{"name": "Host", "value": host}], (name, probe)
    for ingress in by_kind(objects, "Ingress").values():
        assert [r["host"] for r in ingress["spec"]["rules"]] == [host]
        assert ingress["spec"]["tls"][0]["hosts"] == [host]
        assert ingress["spec"]["tls"][0]["secretName"]


def test_changing_the_host_name_in_the_overlay_moves_everything(
    kubectl_path: str, tmp_path: Path
) -> None:
    overlay = copy_overlay(tmp_path)
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8").replace(
        "studio.example.com", "assistant.corp.test"
    )
    kustomization.write_text(text, encoding="utf-8")
    rendered = render(kubectl_path, overlay)
    dump = yaml.safe_dump_all(rendered)
    assert "studio.example.com" not in dump
    test_web_probes_and_public_host(rendered)


def test_ingress_keeps_websockets_open_and_restricts_admin(
    objects: list[dict[str, Any]],
) -> None:
    ingresses = by_kind(objects, "Ingress")
    public = ingresses["assistant-studio"]
    annotations = public["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].rstrip("m")) > 50
    assert public["spec"]["ingressClassName"] == "nginx"
    # /ws/ to uvicorn, everything else to gunicorn.
    routes = {
        p["path"]: (p["pathType"], p["backend"]["service"]["name"])
        for p in public["spec"]["rules"][0]["http"]["paths"]
    }
    assert routes == {"/ws/": ("Prefix", "ws"), "/": ("Prefix", "web")}
    restricted = ingresses["assistant-studio-restricted"]
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for p in restricted["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths == {"/admin": "web", "/metrics": "web"}
    allowed = restricted["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/whitelist-source-range"
    ]
    assert "0.0.0.0/0" not in allowed
    for ingress in ingresses.values():
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]


def _entrypoint_default(variable: str) -> int:
    found = re.search(rf"\$\{{{variable}:-(\d+)\}}", ENTRYPOINT.read_text(encoding="utf-8"))
    assert found, variable
    return int(found[1])


def test_http_on_gunicorn_and_websockets_on_uvicorn(objects: list[dict[str, Any]]) -> None:
    deployments = by_kind(objects, "Deployment")
    services = by_kind(objects, "Service")
    (configmap,) = by_kind(objects, "ConfigMap").values()
    for name in ("web", "ws"):
        spec = deployments[name]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == [name]  # the entry point's gunicorn / uvicorn
        # Out of the Service first (preStop), then the server's own graceful stop, within
        # the grace period.
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        graceful = _entrypoint_default(f"{name.upper()}_GRACEFUL_TIMEOUT")
        assert spec["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful, name
        (port,) = services[name]["spec"]["ports"]
        assert port["targetPort"] == "http"
    # gunicorn's sync workers: 2 per CPU the web container may use.
    web = deployments["web"]["spec"]["template"]["spec"]["containers"][0]
    cpus = int(web["resources"]["limits"]["cpu"])
    assert int(configmap["data"]["WEB_WORKERS"]) == 2 * cpus
    assert int(configmap["data"]["WS_WORKERS"]) >= 1
    # Uploads arrive over HTTP: only web needs the media volume.
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in deployments["ws"]["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert not claims


def test_runs_workers_scale_on_the_runs_queue(objects: list[dict[str, Any]]) -> None:
    queues = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    (configmap,) = by_kind(objects, "ConfigMap").values()
    deployments = by_kind(objects, "Deployment")
    scaled = by_kind(objects, "ScaledObject")
    assert set(scaled) == {"worker-runs", "worker-ingest"}
    for name, queue in (("worker-runs", "runs"), ("worker-ingest", "ingest")):
        assert queue in queues
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        assert metadata["listName"] == queue
        assert int(metadata["listLength"]) > 0
        # The address comes from the scaled container's environment, as KEDA reads it.
        variable = metadata["addressFromEnv"]
        assert variable in configmap["data"]
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert any(
            s.get("configMapRef", {}).get("name") == configmap["metadata"]["name"]
            for s in container["envFrom"]
        )
        # The database KEDA counts in is the one the broker uses.
        assert metadata["databaseIndex"] == "0"
        assert trigger["authenticationRef"]["name"] in by_kind(objects, "TriggerAuthentication")


def test_example_redis_url_uses_the_database_keda_counts_in(
    objects: list[dict[str, Any]],
) -> None:
    import base64

    (secret,) = by_kind(objects, "Secret").values()
    redis_url = base64.b64decode(secret["data"]["REDIS_URL"]).decode()
    assert urlsplit(redis_url).path == "/0"


# --- vLLM -----------------------------------------------------------------------------------


def serve_script_argv(script: Path, tmp_path: Path) -> list[str]:
    """What deploy/vllm/<script> runs with its defaults (a fake `vllm` records it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "argv"
    fake = bin_dir / "vllm"
    fake.write_text(
        f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{record}'\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    subprocess.run(
        [BASH, str(script)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "VLLM_API_KEY": "k" * 32},
        check=True,
        timeout=30,
    )
    return [a for a in record.read_text(encoding="utf-8").split("\0") if a]


@pytest.mark.parametrize(
    ("name", "script"), [("vllm-chat", "serve-chat.sh"), ("vllm-embed", "serve-embedding.sh")]
)
def test_vllm_arguments_are_those_of_the_serve_scripts(
    objects: list[dict[str, Any]], tmp_path: Path, name: str, script: str
) -> None:
    (container,) = by_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
    expected = [
        a for a in serve_script_argv(VLLM_DIR / script, tmp_path) if a != f"--api-key={'k' * 32}"
    ]
    assert container["command"] == ["vllm"]
    assert container["args"] == expected
    # The key reaches vLLM through its environment instead of --api-key.
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "VLLM_API_KEY"
    pinned = (VLLM_DIR / "requirements-gpu.txt").read_text(encoding="utf-8")
    version = re.search(r"(?m)^vllm==(\S+)$", pinned)
    assert version
    assert container["image"] == f"vllm/vllm-openai:v{version[1]}"


def test_vllm_runs_on_gpu_nodes(objects: list[dict[str, Any]]) -> None:
    for name in ("vllm-chat", "vllm-embed"):
        spec = by_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", name
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ], name
        probes = {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")}
        assert probes == {"startupProbe": "/health", "livenessProbe": "/health"}, name
    for name in APP_WORKLOADS:
        spec = by_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
        assert "nodeSelector" not in spec
        assert "tolerations" not in spec


def test_models_yaml_hosts_are_services(objects: list[dict[str, Any]]) -> None:
    services = by_kind(objects, "Service")
    entries = yaml.safe_load(MODELS.read_text(encoding="utf-8"))["endpoints"]
    local = [urlsplit(e["base_url"]) for e in entries if "." not in urlsplit(e["base_url"]).netloc]
    assert len(local) >= 2
    for url in local:
        assert url.hostname in services, url.hostname
        assert url.port in [p["port"] for p in services[url.hostname]["spec"]["ports"]]


def test_chroma_url_is_the_chroma_service(objects: list[dict[str, Any]]) -> None:
    (configmap,) = by_kind(objects, "ConfigMap").values()
    url = urlsplit(configmap["data"]["CHROMA_URL"])
    chroma = by_kind(objects, "Service")[url.hostname or ""]
    assert url.port in [p["port"] for p in chroma["spec"]["ports"]]
    (policy,) = by_kind(objects, "NetworkPolicy").values()
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "chroma"


def test_base_alone_renders(kubectl_path: str) -> None:
    """The base renders by itself too (overlays other than the example build on it)."""
    assert render(kubectl_path, K8S / "base")
