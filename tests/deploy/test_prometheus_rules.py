"""deploy/prometheus/: promtool accepts the configuration and the alert rules, and the rules'
unit tests (alerts_test.yml) pass; every alert is labelled, explained, documented and tested
both firing and silent. promtool comes from Debian's `prometheus` package."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, require_service

PROMETHEUS_DIR = REPO / "deploy/prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
OPERATIONS = REPO / "docs/operations.md"
SEVERITIES = {"critical", "warning"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    require_service(path is not None, "promtool (apt-get install prometheus)")
    assert path is not None
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def test_promtool_accepts_the_configuration(promtool: str, tmp_path: Path) -> None:
    # promtool checks that credentials files exist: point the bearer token of the assistant
    # job at a temporary one, and the rule files at the repository's.
    config = _yaml(CONFIG)
    token = tmp_path / "assistant-metrics-token"
    token.write_text("test-token\n")
    for job in config["scrape_configs"]:
        if "credentials_file" in job.get("authorization", {}):
            job["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = _run(promtool, "check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_load_the_rules_file() -> None:
    assert _yaml(ALERTS_TEST)["rule_files"] == [ALERTS.name]
    assert _yaml(CONFIG)["rule_files"] == [ALERTS.name]


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in _yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert sorted(names - firing) == []
    assert sorted(names - silent) == []
    assert sorted((firing | silent) - names) == []


def test_every_alert_has_a_severity_and_says_what_to_look_at() -> None:
    alerts = _alerts()
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    for rule in alerts:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert set(rule["annotations"]) >= {"summary", "description"}, rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_the_issues_alerts_are_all_there() -> None:
    severities = {rule["alert"]: rule["labels"]["severity"] for rule in _alerts()}
    assert severities["AssistantHigh5xxRatio"] == "critical"
    assert {
        "AssistantHighRequestLatency",
        "LLMCallLatencyHigh",
        "WorkflowRunFailureRatioHigh",
        "RunQueueBacklogGrowing",
        "ModelServerDown",
        "ModelEndpointCircuitOpen",
        "VllmTimeToFirstTokenHigh",
        "ConnectorSignatureFailures",
        "KnowledgeIngestionFailures",
        "HostHighCpu",
        "HostHighMemory",
        "HostDiskSpaceLow",
        "HostDiskFillingUp",
    } <= set(severities)


def test_jobs_named_by_the_rules_are_scraped() -> None:
    jobs = {job["job_name"] for job in _yaml(CONFIG)["scrape_configs"]}
    assert {"assistant", "vllm-chat", "vllm-embedding", "node", "redis"} <= jobs
    named: set[str] = set()
    for rule in _alerts():
        for operator, value in re.findall(r'job\s*(=~|=)\s*"([^"]*)"', rule["expr"]):
            named |= set(value.split("|")) if operator == "=~" else {value}
    assert named
    assert sorted(named - jobs) == []


def test_every_alert_is_explained_in_the_operations_page() -> None:
    page = OPERATIONS.read_text(encoding="utf-8")
    assert "## Dashboard and alerts" in page
    section = page.split("## Dashboard and alerts", 1)[1]
    missing = [rule["alert"] for rule in _alerts() if f"`{rule['alert']}`" not in section]
    assert missing == []
