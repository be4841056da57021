"""The vLLM launch files (deploy/vllm/) and the example deploy/models.yaml, checked without a
GPU: the scripts are valid bash, refuse to start without VLLM_API_KEY, and hand `vllm` exactly
the arguments we mean (a fake `vllm` first on PATH records them); models.yaml has the documented
fields, matches the scripts and holds no secret; vLLM is pinned."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
VLLM_DIR = REPO / "deploy" / "vllm"
CHAT = VLLM_DIR / "serve-chat.sh"
EMBED = VLLM_DIR / "serve-embedding.sh"
SCRIPTS = [CHAT, EMBED]
MODELS_YAML = REPO / "deploy" / "models.yaml"
BASH = shutil.which("bash") or "/bin/bash"
CONFIG_ERROR = 78  # EX_CONFIG, which the systemd unit does not restart on

ENTRY_KEYS = {
    "name",
    "kind",
    "base_url",
    "model",
    "api_key_env",
    "timeout_s",
    "max_concurrency",
    "default_params",
    "enabled",
}
KINDS = {"chat", "embedding", "rerank"}
SAMPLING_KEYS = {
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
}


class FakeVllm:
    """A `vllm` executable that records its arguments, one NUL-terminated item each."""

    def __init__(self, root: Path) -> None:
        self.bin_dir = root / "bin"
        self.bin_dir.mkdir()
        self.record = root / "argv"
        executable = self.bin_dir / "vllm"
        executable.write_text(
            f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{self.record}'\n",
            encoding="utf-8",
        )
        executable.chmod(0o755)

    def run(self, script: Path, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the script with nothing in its environment but PATH and ``env``."""
        return subprocess.run(
            [BASH, str(script)],
            env={"PATH": f"{self.bin_dir}:/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    @property
    def called(self) -> bool:
        return self.record.exists()

    def argv(self) -> list[str]:
        return self.record.read_text(encoding="utf-8").split("\0")[:-1]


@pytest.fixture
def fake_vllm(tmp_path: Path) -> FakeVllm:
    return FakeVllm(tmp_path)


def _flag_values(argv: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for index, item in enumerate(argv):
        if item.startswith("--") and "=" in item:
            flag, value = item.split("=", 1)
            values[flag] = value
        elif item.startswith("--") and index + 1 < len(argv):
            following = argv[index + 1]
            values[item] = "" if following.startswith("--") else following
    return values


def _models() -> list[dict[str, Any]]:
    document: Any = yaml.safe_load(MODELS_YAML.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    assert set(document) == {"endpoints"}
    entries = document["endpoints"]
    assert isinstance(entries, list)
    assert entries
    assert all(isinstance(entry, dict) for entry in entries)
    return entries


# --- the scripts -------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_is_executable_valid_bash(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable (systemd runs it)"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    result = subprocess.run(
        [BASH, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_passes_shellcheck(script: Path) -> None:
    # shellcheck is a Debian package that scripts/test.sh installs when it is missing.
    binary = shutil.which("shellcheck")
    require_service(binary is not None, "shellcheck (apt-get install shellcheck)")
    assert binary is not None
    result = subprocess.run(
        [binary, "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
@pytest.mark.parametrize("key", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_script_refuses_to_start_without_a_key(
    fake_vllm: FakeVllm, script: Path, key: str | None
) -> None:
    env = {} if key is None else {"VLLM_API_KEY": key}
    result = fake_vllm.run(script, **env)
    assert result.returncode == CONFIG_ERROR
    assert "VLLM_API_KEY is not set" in result.stderr
    assert not fake_vllm.called


def test_chat_script_defaults(fake_vllm: FakeVllm) -> None:
    result = fake_vllm.run(CHAT, VLLM_API_KEY="test-key")
    assert result.returncode == 0, result.stderr
    assert fake_vllm.argv() == [
        "serve",
        "Qwen/Qwen2.5-7B-Instruct",
        "--served-model-name",
        "qwen2.5-7b-instruct",
        "--host",
        "0.0.0.0",  # noqa: S104 - a model server for other hosts; see the script
        "--port",
        "8000",
        "--api-key=test-key",
        "--dtype",
        "auto",
        "--tensor-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.90",
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "256",
        "--enable-prefix-caching",
    ]


def test_embedding_script_defaults(fake_vllm: FakeVllm) -> None:
    result = fake_vllm.run(EMBED, VLLM_API_KEY="test-key")
    assert result.returncode == 0, result.stderr
    assert fake_vllm.argv() == [
        "serve",
        "BAAI/bge-m3",
        "--runner",
        "pooling",
        "--convert",
        "auto",
        "--served-model-name",
        "bge-m3",
        "--host",
        "0.0.0.0",  # noqa: S104
        "--port",
        "8001",
        "--api-key=test-key",
        "--dtype",
        "auto",
        "--tensor-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.90",
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "256",
    ]


def test_chat_script_takes_every_setting_from_the_environment(fake_vllm: FakeVllm) -> None:
    result = fake_vllm.run(
        CHAT,
        VLLM_API_KEY="another-key",
        CHAT_MODEL="/models/qwen2.5-7b-awq",
        CHAT_SERVED_MODEL_NAME="qwen-awq",
        CHAT_HOST="10.0.0.5",
        CHAT_PORT="8100",
        CHAT_DTYPE="float16",
        CHAT_TENSOR_PARALLEL_SIZE="2",
        CHAT_GPU_MEMORY_UTILIZATION="0.8",
        CHAT_MAX_MODEL_LEN="16384",
        CHAT_MAX_NUM_SEQS="128",
        MODEL_DOWNLOAD_DIR="/data/hf cache",
        CHAT_EXTRA_ARGS="--enable-auto-tool-choice --tool-call-parser hermes",
    )
    assert result.returncode == 0, result.stderr
    argv = fake_vllm.argv()
    assert argv[:2] == ["serve", "/models/qwen2.5-7b-awq"]
    assert argv[-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    assert _flag_values(argv) == {
        "--served-model-name": "qwen-awq",
        "--host": "10.0.0.5",
        "--port": "8100",
        "--api-key": "another-key",
        "--dtype": "float16",
        "--tensor-parallel-size": "2",
        "--gpu-memory-utilization": "0.8",
        "--max-model-len": "16384",
        "--max-num-seqs": "128",
        "--enable-prefix-caching": "",
        "--download-dir": "/data/hf cache",
        "--enable-auto-tool-choice": "",
        "--tool-call-parser": "hermes",
    }


def test_embedding_script_takes_every_setting_from_the_environment(
    fake_vllm: FakeVllm,
) -> None:
    result = fake_vllm.run(
        EMBED,
        VLLM_API_KEY="another-key",
        EMBED_MODEL="Qwen/Qwen3-Embedding-0.6B",
        EMBED_SERVED_MODEL_NAME="qwen3-embed",
        EMBED_HOST="127.0.0.1",
        EMBED_PORT="8101",
        EMBED_DTYPE="bfloat16",
        EMBED_TENSOR_PARALLEL_SIZE="1",
        EMBED_GPU_MEMORY_UTILIZATION="0.12",
        EMBED_MAX_MODEL_LEN="2048",
        EMBED_MAX_NUM_SEQS="64",
        EMBED_CONVERT="embed",
        MODEL_DOWNLOAD_DIR="/data/hf",
        EMBED_EXTRA_ARGS="--shutdown-timeout 30",
    )
    assert result.returncode == 0, result.stderr
    argv = fake_vllm.argv()
    assert argv[:2] == ["serve", "Qwen/Qwen3-Embedding-0.6B"]
    assert _flag_values(argv) == {
        "--runner": "pooling",
        "--convert": "embed",
        "--served-model-name": "qwen3-embed",
        "--host": "127.0.0.1",
        "--port": "8101",
        "--api-key": "another-key",
        "--dtype": "bfloat16",
        "--tensor-parallel-size": "1",
        "--gpu-memory-utilization": "0.12",
        "--max-model-len": "2048",
        "--max-num-seqs": "64",
        "--download-dir": "/data/hf",
        "--shutdown-timeout": "30",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_a_key_starting_with_a_dash_stays_one_argument(fake_vllm: FakeVllm, script: Path) -> None:
    result = fake_vllm.run(script, VLLM_API_KEY="-Zm9v-YmFy")
    assert result.returncode == 0, result.stderr
    assert "--api-key=-Zm9v-YmFy" in fake_vllm.argv()


@pytest.mark.parametrize(
    ("script", "variable", "value"),
    [
        (CHAT, "CHAT_GPU_MEMORY_UTILIZATION", "90"),
        (CHAT, "CHAT_PORT", "eighty"),
        (CHAT, "CHAT_MAX_MODEL_LEN", "8k tokens"),
        (EMBED, "EMBED_MAX_NUM_SEQS", "0"),
        (EMBED, "EMBED_CONVERT", "classify"),
    ],
)
def test_a_malformed_setting_is_refused_before_vllm_starts(
    fake_vllm: FakeVllm, script: Path, variable: str, value: str
) -> None:
    result = fake_vllm.run(script, VLLM_API_KEY="test-key", **{variable: value})
    assert result.returncode == CONFIG_ERROR
    assert f"{variable}={value}" in result.stderr
    assert not fake_vllm.called


def test_every_script_setting_is_documented() -> None:
    page = (VLLM_DIR / "README.md").read_text(encoding="utf-8")
    names: set[str] = set()
    for script in SCRIPTS:
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", script.read_text(encoding="utf-8")))
    assert {"VLLM_API_KEY", "CHAT_PORT", "EMBED_PORT", "MODEL_DOWNLOAD_DIR"} <= names
    assert sorted(name for name in names if f"`{name}`" not in page) == []


# --- deploy/models.yaml ----------------------------------------------------------------


def test_models_yaml_entries_have_the_documented_fields() -> None:
    entries = _models()
    names = [entry.get("name") for entry in entries]
    assert len(names) == len(set(names)), "endpoint names must be unique"
    for entry in entries:
        where = entry.get("name", entry)
        assert set(entry) == ENTRY_KEYS, where
        assert isinstance(entry["name"], str)
        assert entry["name"]
        assert entry["kind"] in KINDS, where
        assert re.fullmatch(r"https?://[^\s/]+(:\d+)?(/[^\s]*)?/v1", entry["base_url"]), where
        assert isinstance(entry["model"], str)
        assert entry["model"]
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", entry["api_key_env"]), where
        assert isinstance(entry["timeout_s"], int | float)
        assert 0 < entry["timeout_s"] <= 3600, where
        assert isinstance(entry["max_concurrency"], int)
        assert 1 <= entry["max_concurrency"] <= 4096, where
        assert isinstance(entry["default_params"], dict), where
        assert set(entry["default_params"]) <= SAMPLING_KEYS, where
        assert isinstance(entry["enabled"], bool), where
    by_name = {entry["name"]: entry for entry in entries}
    assert {"qwen-chat", "bge-embeddings", "openai-fallback"} <= set(by_name)
    assert by_name["qwen-chat"]["kind"] == "chat"
    assert by_name["bge-embeddings"]["kind"] == "embedding"
    assert by_name["openai-fallback"]["enabled"] is False


@pytest.mark.parametrize(("endpoint", "script"), [("qwen-chat", CHAT), ("bge-embeddings", EMBED)])
def test_models_yaml_matches_what_the_scripts_serve(
    fake_vllm: FakeVllm, endpoint: str, script: Path
) -> None:
    result = fake_vllm.run(script, VLLM_API_KEY="test-key")
    assert result.returncode == 0, result.stderr
    served = _flag_values(fake_vllm.argv())
    entry = {item["name"]: item for item in _models()}[endpoint]
    assert entry["model"] == served["--served-model-name"]
    assert entry["base_url"].endswith(f":{served['--port']}/v1")
    assert entry["api_key_env"] == "VLLM_API_KEY"
    assert entry["max_concurrency"] <= int(served["--max-num-seqs"])


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


_SECRET_LIKE = [
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),  # OpenAI-style keys
    re.compile(r"Bearer\s+[A-Za-z0-9._~+/-]{8,}"),
    re.compile(r"\b(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}\b"),
]


def test_models_yaml_holds_no_secrets() -> None:
    text = MODELS_YAML.read_text(encoding="utf-8")
    for pattern in _SECRET_LIKE:
        assert pattern.search(text) is None, pattern.pattern
    secret_keys = re.compile(r"(?i)(.*_)?(api_?key|key|token|secret|password)")
    assert [key for key in _keys(yaml.safe_load(text)) if secret_keys.fullmatch(key)] == []
    for entry in _models():
        # A variable's name, never a value: upper-case letters, digits and underscores only.
        assert entry["api_key_env"].isupper(), entry["name"]


def test_models_yaml_loads_with_the_projects_own_parser() -> None:
    from workflows.endpoint_loading import models_file_parse

    document = models_file_parse(MODELS_YAML.read_text(encoding="utf-8"))
    assert [entry.name for entry in document.endpoints] == [e["name"] for e in _models()]


# --- requirements and the systemd unit ----------------------------------------------------


def test_requirements_gpu_pins_vllm_alone() -> None:
    lines = [
        line.strip()
        for line in (VLLM_DIR / "requirements-gpu.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) == 1, lines
    assert re.fullmatch(r"vllm==\d+\.\d+\.\d+(\.post\d+)?", lines[0]), lines[0]


def test_systemd_unit_runs_the_chat_script_with_its_key_outside_the_unit() -> None:
    text = (VLLM_DIR / "vllm-chat.service").read_text(encoding="utf-8")
    assert "VLLM_API_KEY=" not in text.replace("# VLLM_API_KEY=...", "")
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["ExecStart"].endswith("/deploy/vllm/serve-chat.sh")
    assert service["EnvironmentFile"].startswith("/")
    assert service["RestartPreventExitStatus"] == str(CONFIG_ERROR)
    assert service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
