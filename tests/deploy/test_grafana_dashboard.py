"""The Grafana dashboard (deploy/grafana/) and the alert rules (deploy/prometheus/alerts.yml)
name only metrics that exist.

Every PromQL expression (panel targets, template variables, annotations, alert rules) is parsed
for metric names. A name must be one Assistant Studio exports, taken from the real
prometheus_client registry after importing every product module that uses prometheus_client
(with the sample suffixes prometheus_client adds), or one of EXTERNAL_METRICS, the exporters
that prometheus.yml scrapes next to it. The dashboard must also show every product metric.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY
from prometheus_client.metrics_core import Metric

from tests.conftest import REPO, require_service

DASHBOARD = REPO / "deploy/grafana/dashboards/assistant-studio.json"
ALERTS = REPO / "deploy/prometheus/alerts.yml"
PROVISIONING = REPO / "deploy/grafana/provisioning"
PRODUCT_PACKAGES = ("assistant_site", "audit", "workflows", "connectors", "knowledge", "frontend")


def _histogram(*families: str) -> set[str]:
    return {f"{family}{suffix}" for family in families for suffix in ("_bucket", "_sum", "_count")}


# Metrics of other programs, by the program that exports them. Extend a list when a panel or a
# rule needs another of its metrics (check the name against the exporter's own /metrics).
EXTERNAL_METRICS: dict[str, frozenset[str]] = {
    # vLLM's /metrics (jobs vllm-chat, vllm-embedding; names from
    # /work/shared/reference/protocols.md C.3, labels model_name and engine).
    "vLLM": frozenset(
        {
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
            "vllm:request_success_total",
            "vllm:num_preemptions_total",
            "vllm:prefix_cache_queries_total",
            "vllm:prefix_cache_hits_total",
        }
        | _histogram(
            "vllm:time_to_first_token_seconds",
            "vllm:inter_token_latency_seconds",
            "vllm:request_time_per_output_token_seconds",
            "vllm:e2e_request_latency_seconds",
            "vllm:request_queue_time_seconds",
            "vllm:request_prefill_time_seconds",
            "vllm:request_decode_time_seconds",
            "vllm:request_inference_time_seconds",
            "vllm:request_prompt_tokens",
            "vllm:request_generation_tokens",
            "vllm:request_params_max_tokens",
            "vllm:iteration_tokens_total",
        )
    ),
    # node_exporter's default collectors (job node): cpu, meminfo, filesystem, uname, loadavg.
    "node_exporter": frozenset(
        {
            "node_cpu_seconds_total",
            "node_memory_MemAvailable_bytes",
            "node_memory_MemTotal_bytes",
            "node_filesystem_avail_bytes",
            "node_filesystem_free_bytes",
            "node_filesystem_size_bytes",
            "node_filesystem_readonly",
            "node_uname_info",
            "node_load1",
            "node_load5",
            "node_load15",
        }
    ),
    # redis_exporter (job redis): redis_key_size is a list's length with --check-single-keys.
    "redis_exporter": frozenset(
        {"redis_up", "redis_key_size", "redis_key_value", "redis_connected_clients"}
    ),
    # Series Prometheus writes itself, for every target and every alert.
    "Prometheus": frozenset(
        {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
    ),
}

# Metrics the rules and the dashboard use that Assistant Studio does not export yet, with what
# has to change. test_pending_metrics_are_still_missing fails once one is exported: then take
# it off this list.
PENDING_PRODUCT_METRICS: dict[str, str] = {}

# The sample names prometheus_client writes for a family of each type.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}


def _sample_names(family: Metric) -> set[str]:
    names = {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names | {sample.name for sample in family.samples}


def _product_metric_modules() -> list[str]:
    uses = re.compile(r"^\s*(?:from|import) prometheus_client\b", re.MULTILINE)
    modules = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts or not uses.search(path.read_text(encoding="utf-8")):
                continue
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules.append(module.removesuffix(".__init__"))
    return modules


@cache
def product_metric_names() -> frozenset[str]:
    """Sample names of every metric in the registry once the product's metric modules are
    imported, without the default process/platform/GC collectors: with PROMETHEUS_MULTIPROC_DIR
    (every deployment) /metrics serves only the merged product metrics, not those."""
    for module in _product_metric_modules():
        importlib.import_module(module)
    defaults = {
        family.name
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
        for family in collector.collect()
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name not in defaults:
            names |= _sample_names(family)
    return frozenset(names)


def known_metric_names() -> frozenset[str]:
    external = frozenset[str]().union(*EXTERNAL_METRICS.values())
    return product_metric_names() | external | frozenset(PENDING_PRODUCT_METRICS)


# ---- PromQL -------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PROMQL_FUNCTIONS = _words(
    # Aggregations.
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio "
    # Functions (Prometheus 2.x and 3.x), and start()/end() of the @ modifier.
    "abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month "
    "day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count "
    "histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum "
    "holt_winters double_exponential_smoothing hour idelta increase irate label_join "
    "label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort "
    "sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector year avg_over_time "
    "min_over_time max_over_time sum_over_time count_over_time quantile_over_time "
    "stddev_over_time stdvar_over_time last_over_time present_over_time mad_over_time acos "
    "acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad pi start end"
)
PROMQL_KEYWORDS = _words(
    "and or unless bool offset by without on ignoring group_left group_right atan2 inf nan"
)

_STR = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`"
_STRING = re.compile(_STR)
_NAME_MATCHER = re.compile(rf"__name__\s*(=~|!=|!~|=)\s*({_STR})")
_RANGE = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z0-9]*)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed).

    Raises ValueError for a function PromQL does not have and for a regex on __name__, whose
    names cannot be checked."""
    names: set[str] = set()
    for operator, quoted in _NAME_MATCHER.findall(expr):
        if operator != "=":
            raise ValueError(f"__name__{operator} cannot be checked; name the metric: {expr}")
        names.add(quoted[1:-1])
    text = _STRING.sub('""', expr)
    text = _RANGE.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _GRAFANA_VARIABLE.sub("", text)
    text = _GROUPING.sub("", text)
    for token in _TOKEN.finditer(text):
        name = token.group("name")
        if name is None or name.lower() in PROMQL_KEYWORDS:
            continue
        if not token.group("call"):
            names.add(name)
        elif name not in PROMQL_FUNCTIONS:
            raise ValueError(f"{name}() is not a PromQL function: {expr}")
    return names


def unknown_metrics(expressions: dict[str, str], known: frozenset[str]) -> dict[str, list[str]]:
    """Where (panel, alert...) -> the metric names of its expression that nothing exports."""
    found: dict[str, list[str]] = {}
    for where, expr in expressions.items():
        missing = sorted(metric_names(expr) - known)
        if missing:
            found[where] = missing
    return found


# ---- where the expressions are ------------------------------------------------------------

_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.DOTALL)


def _variable_expression(query: Any) -> str | None:
    text = query.get("query", "") if isinstance(query, dict) else str(query)
    for pattern in (_LABEL_VALUES, _QUERY_RESULT):
        match = pattern.match(text)
        if match:
            return match.group(1)
    return None  # label_values(label) or label_names(): no metric


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions(dashboard: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            found[f'panel "{panel.get("title")}" {target.get("refId")}'] = target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            expr = _variable_expression(variable.get("query"))
            if expr is not None:
                found[f"variable {variable['name']}"] = expr
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            found[f'annotation "{annotation["name"]}"'] = annotation["expr"]
    return found


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return {
        f"rule {rule.get('alert') or rule.get('record')}": rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


# ---- the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        (
            'sum by (route) (rate(a_total{route=~"$route", x="sum(b)"}[$__rate_interval]))',
            {"a_total"},
        ),
        ("histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le, endpoint)) > 1.5", {"h_bucket"}),
        (
            "1 - avg without (cpu) (rate(c[5m])) > 0.7 and on () (d offset 15m) or vector(0)",
            {"c", "d"},
        ),
        ("a / on (job) group_left (version) b unless ignoring (x) c == bool 1e3", {"a", "b", "c"}),
        (
            "vllm:time_to_first_token_seconds_bucket{le='1.0'}",
            {"vllm:time_to_first_token_seconds_bucket"},
        ),
        ('{__name__="g", job="x"} + predict_linear(f[6h], 4 * 3600) < -Inf', {"g", "f"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)") @ start()', {"m"}),
        ("max_over_time(deriv(q[1m])[30m:1m]) > 0.5", {"q"}),
    ],
)
def test_metric_names_finds_the_selected_metrics(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


@pytest.mark.parametrize(
    "expr", ["rates(a_total[5m])", 'sum({__name__=~"assistant_.*"})', "histogram_quantil(0.9, b)"]
)
def test_metric_names_refuses_what_it_cannot_check(expr: str) -> None:
    with pytest.raises(ValueError, match=r"function|cannot be checked"):
        metric_names(expr)


def test_a_panel_naming_a_metric_that_does_not_exist_is_reported() -> None:
    dashboard = load_dashboard()
    dashboard["panels"].append(
        {
            "type": "timeseries",
            "title": "Made up",
            "targets": [
                {"refId": "A", "expr": "sum(rate(assistant_made_up_total[5m]))"},
                # One letter off the real assistant_http_requests_total.
                {"refId": "B", "expr": "sum(rate(assistant_http_request_total[5m]))"},
                {"refId": "C", "expr": "sum(rate(assistant_http_requests_total[5m]))"},
            ],
        }
    )
    found = unknown_metrics(dashboard_expressions(dashboard), known_metric_names())
    assert found == {
        'panel "Made up" A': ["assistant_made_up_total"],
        'panel "Made up" B': ["assistant_http_request_total"],
    }


# ---- the exported names -------------------------------------------------------------------


def test_product_metric_names_come_from_the_registry_with_their_suffixes() -> None:
    names = product_metric_names()
    assert {
        "assistant_http_requests_total",
        "assistant_http_requests_created",
        "assistant_http_request_duration_seconds_bucket",
        "assistant_http_request_duration_seconds_sum",
        "assistant_http_request_duration_seconds_count",
        "assistant_runs_active",
        "assistant_llm_circuit_open",
    } <= names
    # Counters have no sample under their bare family name; the default collectors are not
    # served by the multiprocess /metrics.
    assert "assistant_http_requests" not in names
    assert not {name for name in names if name.startswith(("process_", "python_"))}


def test_external_metrics_do_not_shadow_product_metrics() -> None:
    external = frozenset[str]().union(*EXTERNAL_METRICS.values())
    assert not external & product_metric_names()
    assert all(not name.startswith("assistant_") for name in external)


def test_pending_metrics_are_still_missing_and_used() -> None:
    used = set[str]().union(
        *(metric_names(expr) for expr in dashboard_expressions(load_dashboard()).values()),
        *(metric_names(expr) for expr in alert_expressions().values()),
    )
    for name in PENDING_PRODUCT_METRICS:
        assert name not in product_metric_names(), f"{name} is exported now: unlist it"
        assert name in used, f"{name} is pending but nothing uses it"


# ---- the dashboard and the rules ----------------------------------------------------------


def test_every_dashboard_metric_is_exported() -> None:
    expressions = dashboard_expressions(load_dashboard())
    assert len(expressions) > 40
    assert unknown_metrics(expressions, known_metric_names()) == {}


def test_every_alert_rule_metric_is_exported() -> None:
    expressions = alert_expressions()
    assert len(expressions) >= 15
    assert unknown_metrics(expressions, known_metric_names()) == {}


def test_the_dashboard_shows_every_product_metric() -> None:
    used = set[str]().union(
        *(metric_names(expr) for expr in dashboard_expressions(load_dashboard()).values())
    )
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", name) for name in used}
    product = {re.sub(r"_(total|created|bucket|sum|count)$", "", n) for n in product_metric_names()}
    assert sorted(product - families) == []


def test_the_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "assistant-studio"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None  # ids belong to one Grafana
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] >= 0, panel["title"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("description"), panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", name
    titles = {panel["title"] for panel in panels}
    # The list: request rate and latency by route, 5xx, runs by status, node latency by
    # type, LLM latency/TTFT/tokens by endpoint, connectors, queue depth, ingestion outcomes.
    assert {
        "Request rate by route",
        "p99 latency by route",
        "5xx by route",
        "Runs finished by status",
        "Node latency by type (p95)",
        "LLM latency",
        "Time to first token",
        "Tokens per second",
        "vLLM time to first token",
        "Connector events by outcome",
        "Deliveries by outcome",
        "Delivery latency",
        "Celery queue depth",
        "Ingestion outcomes",
    } <= titles


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels(load_dashboard()["panels"]):
        position = panel["gridPos"]
        for y in range(position["y"], position["y"] + position["h"]):
            for x in range(position["x"], position["x"] + position["w"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    datasources = yaml.safe_load(
        (PROVISIONING / "datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http")
    providers = yaml.safe_load(
        (PROVISIONING / "dashboards/dashboards.yml").read_text(encoding="utf-8")
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()


def _with_grafana_variables_filled(expr: str) -> str:
    expr = re.sub(r"\$__rate_interval|\$__interval|\$__range", "5m", expr)
    return _GRAFANA_VARIABLE.sub(".*", expr)


def test_dashboard_expressions_parse_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require_service(promtool is not None, "promtool (apt-get install prometheus)")
    assert promtool is not None
    expressions = dashboard_expressions(load_dashboard())
    rules = [
        {"record": f"dashboard:expression_{number}", "expr": _with_grafana_variables_filled(expr)}
        for number, expr in enumerate(expressions.values())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
