"""The browser node editor: time to open a large workflow, frame times while dragging a node,
and the size of the bundle, on this machine.

Serves the studio as a deployment does (``settings.base``, DEBUG off, the built bundle
collected into a temporary ``VAR_DIR`` and served by WhiteNoise, gzip-compressed) with
``uvicorn assistant_site.asgi:application`` (one process) on a free loopback port, and drives
it with Playwright in headless chromium (``/usr/bin/chromium`` or ``CHROMIUM_PATH``, the
browser tests' launch flags), 1440x900 viewport:

1. Open: a generated workflow of ``--nodes`` nodes (a message trigger fanning out into chains
   of condition -> template -> llm -> reply -> end, with valid configs; the validator is asked
   and its problem count printed) is stored as a workflow's draft through
   ``workflows.services``, and ``/studio/workflows/<id>`` is opened ``--repeat`` times in a new
   browser context (cold: empty cache) and as many times by reloading that page (warm: the
   bundle comes from the HTTP cache). A script installed before the page's own records, on
   every animation frame, how many ``.react-flow__node`` elements the canvas holds and its
   viewport transform. "First nodes" is the first frame with nodes, "settled" the frame of
   the last change (after the editor's ``fitView``; the page is then watched until nothing
   changed for 1 s and the network is idle). All times are from navigation start
   (``performance.now()``). The same is done for a 50-node workflow for comparison.
   One unrecorded open comes first (the server's first requests import its code). After the
   browser runs, the editor's three GETs are also timed one at a time with urllib.
2. Drag: in the large workflow, a node near the middle of the canvas is dragged with the mouse,
   ``--steps`` moves paced at 60 per second (as a mouse sends them; each move also waits until
   the page has handled the previous one, so a slow page gets fewer), ``--drags`` times there
   and back, while an animation-frame recorder collects frame intervals and the DevTools
   Performance counters give script, style/layout and main-thread time per move. Views: zoomed
   in as near 100 % as the Controls' zoom-in button gets (with ``onlyRenderVisibleElements``
   only the visible nodes are in the DOM), and the whole graph fitted (as the editor opens it;
   zoomed out further if some node is still not rendered). One more drag per view, not timed,
   counts React renders per commit through a React DevTools hook the script installs
   (``__REACT_DEVTOOLS_GLOBAL_HOOK__``: a component rendered when its fiber is new or has the
   ``PerformedWork`` flag, as React DevTools decides) and canvas nodes added to the DOM.
3. Bundle: the raw and gzip (level 9, what WhiteNoise serves without brotli) size of every file
   each entry loads (its script, the chunks it imports, their stylesheets), from the Vite
   manifest of ``--dist``.

The database: ``--database-url``; else PostgreSQL database ``bench_editor`` on the server of
``DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432``), created and migrated if
missing; else, when that server is not reachable, a temporary SQLite file (migrated). It
creates a user ``bench-editor``, a model endpoint ``bench-editor-llm`` (never called) and two
workflows, deleted at the end. No Redis: the cache is local memory, which one server process
does not mind.

    .venv/bin/python bench/editor.py [--nodes 200] [--repeat 5] [--dist frontend/dist]

It builds nothing: build the bundle first (``npm ci && npm run build`` in frontend/, or
``npx vite build --outDir DIR`` and ``--dist DIR``). Prints the date, machine, command and
Markdown tables on stdout; progress on stderr. The machine's other load shows in every figure:
the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common
from bench.common import REPO, BenchError, log, percentile_ms, production_env, run_step
from bench.http_servers import HOST, SERVERS, free_port, machine_lines, running_server, version

USERNAME = "bench-editor"
ENDPOINT_NAME = "bench-editor-llm"
DATABASE_NAME = "bench_editor"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
COMPARISON_NODES = 50
VIEWPORT = {"width": 1440, "height": 900}
# The browser tests' flags (tests/frontend/conftest.py): no background networking.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The generated layout: one chain per row, left to right, as the editor's auto-layout puts it.
COLUMN_PX = 280
ROW_PX = 130
CHAIN_LENGTH = 5  # condition, template, llm, reply, end
QUIET_S = 1.0  # the canvas is settled once nothing changed for this long
LOAD_TIMEOUT_S = 60.0
MOVE_HZ = 60.0
DRAG_PX = (240.0, 120.0)
SLOW_FRAME_MS = 33.0
DRAG_TOLERANCE_PX = 15.0
LAZY = "lazy chunk (not in the total)"

# Installed before the page's own scripts (Page.addScriptToEvaluateOnNewDocument).
INIT_SCRIPT = r"""
(() => {
  const bench = {
    timeline: [], lastChange: 0, watching: true, frames: null,
    longTasks: [], counting: false, commits: [], hookError: "",
  };
  window.__bench = bench;
  let last = "";
  const tick = (t) => {
    if (bench.watching) {
      const count = document.querySelectorAll(".react-flow__node").length;
      const viewport = document.querySelector(".react-flow__viewport");
      const transform = viewport ? viewport.style.transform : "";
      const key = count + "|" + transform;
      if (key !== last) {
        bench.timeline.push([t, count, transform]);
        bench.lastChange = t;
        last = key;
      }
    }
    if (bench.frames) bench.frames.push(t);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        bench.longTasks.push([entry.startTime, entry.duration]);
      }
    }).observe({ type: "longtask", buffered: true });
  } catch (error) {}

  // Which components rendered in a commit: React DevTools' test (a fiber rendered when it is
  // new or has the PerformedWork flag; a subtree whose child list is unchanged was skipped).
  const PERFORMED_WORK = 1;
  const HOST = 5;
  const COMPONENTS = new Set([0, 1, 11, 14, 15]);
  const REGIONS = [
    "react-flow__nodes", "react-flow__edges", "react-flow__minimap", "react-flow__controls",
    "react-flow__background", "inspector", "palette", "editor-toolbar",
  ];
  const classes = (fiber) => {
    const node = fiber && fiber.tag === HOST ? fiber.stateNode : null;
    return node && node.classList ? node.classList : null;
  };
  const countCommit = (root) => {
    const stats = {
      components: 0, flowNodes: 0, flowNodeMounts: 0, nodeWrappers: 0, regions: {},
      domNodes: document.querySelectorAll(".react-flow__node").length,
    };
    const walk = (next, prev, region) => {
      const own = classes(next);
      if (own) {
        for (const name of REGIONS) {
          if (own.contains(name)) { region = name; break; }
        }
      }
      if (COMPONENTS.has(next.tag) && (prev === null || (next.flags & PERFORMED_WORK))) {
        stats.components += 1;
        stats.regions[region] = (stats.regions[region] || 0) + 1;
        const child = classes(next.child);
        if (child && child.contains("flow-node")) {
          stats.flowNodes += 1;
          if (prev === null) stats.flowNodeMounts += 1;
        }
        if (child && child.contains("react-flow__node")) stats.nodeWrappers += 1;
      }
      if (prev !== null && next.child === prev.child) return;
      for (let child = next.child; child; child = child.sibling) {
        walk(child, child.alternate, region);
      }
    };
    walk(root.current, root.current.alternate, "other");
    bench.commits.push(stats);
  };
  // Canvas nodes added to the DOM while counting (onlyRenderVisibleElements mounts a node
  // when it comes into view).
  bench.added = 0;
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.classList && node.classList.contains("react-flow__node")) bench.added += 1;
      }
    }
  });
  bench.startCounting = () => {
    bench.commits = [];
    bench.added = 0;
    bench.counting = true;
    observer.observe(document.body, { childList: true, subtree: true });
  };
  bench.stopCounting = () => {
    bench.counting = false;
    observer.disconnect();
    return { commits: bench.commits, added: bench.added, error: bench.hookError };
  };
  let renderers = 0;
  window.__REACT_DEVTOOLS_GLOBAL_HOOK__ = {
    renderers: new Map(),
    supportsFiber: true,
    isDisabled: false,
    inject(renderer) { renderers += 1; this.renderers.set(renderers, renderer); return renderers; },
    checkDCE() {},
    onCommitFiberRoot(id, root) {
      if (!bench.counting) return;
      try { countCommit(root); } catch (error) { bench.hookError = String(error); }
    },
    onCommitFiberUnmount() {},
    onPostCommitFiberRoot() {},
  };
})();
"""

# What the page recorded while it opened.
READ_OPEN = """
() => {
  const bench = window.__bench;
  const nav = performance.getEntriesByType("navigation")[0];
  const first = bench.timeline.find((entry) => entry[1] > 0);
  const settled = bench.timeline[bench.timeline.length - 1];
  return {
    first: first ? first[0] : null,
    settled: settled ? settled[0] : null,
    count: settled ? settled[1] : 0,
    transform: settled ? settled[2] : "",
    ttfb: nav.responseStart,
    documentEnd: nav.responseEnd,
    resources: performance.getEntriesByType("resource").map((entry) => ({
      name: entry.name, start: entry.startTime, end: entry.responseEnd,
      transfer: entry.transferSize, encoded: entry.encodedBodySize,
    })),
    longTasks: bench.longTasks,
  };
}
"""

# The rendered node nearest a point of the page, with its header's box.
PICK_NODE = """
([x, y]) => {
  let best = null;
  for (const element of document.querySelectorAll(".react-flow__node")) {
    const header = element.querySelector(".flow-node-header");
    if (!header) continue;
    const box = header.getBoundingClientRect();
    const cx = box.left + box.width / 2, cy = box.top + box.height / 2;
    const distance = Math.hypot(cx - x, cy - y);
    if (!best || distance < best.distance) {
      best = { id: element.dataset.id, x: cx, y: cy, distance };
    }
  }
  return best;
}
"""


# --- The generated workflow ---------------------------------------------------------------


def workflow_graph(nodes: int) -> dict[str, Any]:
    """A message trigger fanning out into chains of condition -> (template, llm, reply)... ->
    end, one chain per row: ``nodes`` nodes in all, every one valid."""
    if nodes < 3:
        raise ValueError("a workflow needs at least 3 nodes here")
    chains = max(1, round((nodes - 1) / CHAIN_LENGTH))
    base, extra = divmod(nodes - 1, chains)
    lengths = [base + (1 if index < extra else 0) for index in range(chains)]
    trigger = {
        "id": "message",
        "type": "message_trigger",
        "type_version": 1,
        "name": "Message",
        "config": {},
        "position": {"x": 0, "y": (chains - 1) * ROW_PX // 2},
    }
    graph_nodes: list[dict[str, Any]] = [trigger]
    edges: list[dict[str, Any]] = []
    for row, length in enumerate(lengths):
        previous, previous_output, handle = "message", "", "out"
        for column in range(length):
            kind = chain_kind(column, length)
            node_id = f"{kind}_{row}_{column}"
            reads = f"{{{{ nodes.{previous}.{previous_output} }}}}" if previous_output else ""
            config, output = node_config(kind, row, reads or "{{ trigger.text }}")
            graph_nodes.append(
                {
                    "id": node_id,
                    "type": kind,
                    "type_version": 1,
                    "name": f"{kind.replace('_', ' ').capitalize()} {row + 1}.{column + 1}",
                    "config": config,
                    "position": {"x": (column + 1) * COLUMN_PX, "y": row * ROW_PX},
                }
            )
            edges.append(
                {
                    "id": f"e_{previous}_{node_id}",
                    "source": previous,
                    "source_handle": handle,
                    "target": node_id,
                    "target_handle": "in",
                }
            )
            previous, previous_output = node_id, output
            handle = "topic" if kind == "condition" else "out"
    return {"format_version": 1, "variables": {}, "nodes": graph_nodes, "edges": edges}


def chain_kind(column: int, length: int) -> str:
    if column == 0:
        return "condition"
    if column == length - 1:
        return "end"
    return ("template", "llm", "reply")[(column - 1) % 3]


def node_config(kind: str, row: int, reads: str) -> tuple[dict[str, Any], str]:
    """The node's config, reading ``reads``, and the output the next node reads."""
    if kind == "condition":
        case = {"id": "topic", "left": "{{ trigger.text }}", "operator": "contains"}
        return {"cases": [{**case, "right": f"topic {row + 1}"}]}, "matched"
    if kind == "template":
        return {"template": f"Topic {row + 1}: {reads}"}, "text"
    if kind == "llm":
        config = {
            "endpoints": [ENDPOINT_NAME],
            "system_prompt": f"You answer questions about topic {row + 1}. Be brief.",
            "prompt": reads,
        }
        return config, "text"
    if kind == "reply":
        return {"format": "text", "text": reads}, "text"
    return {"output": reads}, "output"


# --- Bundle sizes -------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFile:
    entry: str
    path: str
    kind: str
    raw: int
    gzipped: int


def read_manifest(dist: Path) -> dict[str, Any]:
    path = dist / ".vite" / "manifest.json"
    if not path.is_file():
        raise BenchError(
            f"the frontend bundle is not built ({path} is missing): run "
            "`npm ci && npm run build` in frontend/, or pass --dist with a built folder"
        )
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def entry_loads(manifest: dict[str, Any], source: str) -> tuple[list[str], list[str], list[str]]:
    """(scripts, stylesheets, lazy chunks) of an entry: its chunk and the chunks it imports,
    recursively, as Vite's manifest lists them, load at start; dynamic imports (lazy) later."""
    scripts: list[str] = []
    styles: list[str] = []
    lazy: list[str] = []
    pending = [source]
    while pending:
        key = pending.pop(0)
        chunk = manifest[key]
        if chunk["file"] in scripts:
            continue
        scripts.append(chunk["file"])
        styles.extend(path for path in chunk.get("css", []) if path not in styles)
        pending.extend(chunk.get("imports", []))
        lazy.extend(manifest[k]["file"] for k in chunk.get("dynamicImports", []) if k in manifest)
    return scripts, styles, [path for path in dict.fromkeys(lazy) if path not in scripts]


def bundle_files(dist: Path, manifest: dict[str, Any]) -> list[BundleFile]:
    """Every file each entry loads at start, with its raw and gzip -9 size."""
    from frontend.assets import ENTRY_SOURCES

    files: list[BundleFile] = []
    for entry, source in ENTRY_SOURCES.items():
        if source not in manifest:
            raise BenchError(f"{source} is not in {dist}/.vite/manifest.json")
        scripts, styles, lazy = entry_loads(manifest, source)
        listed = [(p, "script") for p in scripts] + [(p, "stylesheet") for p in styles]
        for path, kind in listed + [(p, LAZY) for p in lazy]:
            kind_label = "entry script" if path == manifest[source]["file"] else kind
            try:
                data = (dist / path).read_bytes()
            except FileNotFoundError as exc:
                raise BenchError(f"{dist / path} is in the manifest but missing") from exc
            files.append(
                BundleFile(entry, path, kind_label, len(data), len(gzip.compress(data, 9)))
            )
    return files


# --- Database, Django, server ----------------------------------------------------------------


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


def choose_database(explicit: str | None) -> tuple[str, str]:
    """(DATABASE_URL for the server, how the report names it); "" means SQLite."""
    if explicit:
        return explicit, f"`{urlsplit(explicit).path.lstrip('/')}` (--database-url)"
    server = os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES
    parts = urlsplit(server)
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        url = urlunsplit(parts._replace(path=f"/{DATABASE_NAME}"))
        if reachable(url):
            return url, f"PostgreSQL database `{DATABASE_NAME}` on {parts.hostname}"
        log(f"PostgreSQL at {parts.hostname}:{parts.port or 5432} is not reachable: SQLite")
    return "", "a temporary SQLite file"


def prepare(var_dir: Path, dist: Path, database_url: str) -> dict[str, str]:
    """The server's environment; the database created if missing and migrated, static files
    (the bundle included) collected into the temporary VAR_DIR."""
    env = production_env(var_dir, redis_url="")
    env["DATABASE_URL"] = database_url
    env["FRONTEND_DIST"] = str(dist.resolve())
    # The model endpoint's (empty) key is encrypted at rest: a throwaway key.
    env["SECRETS_KEYS"] = f"bench:{base64.b64encode(os.urandom(32)).decode()}"
    (var_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    python = sys.executable
    if database_url:
        out = run_step([python, "scripts/create_database.py", database_url], env, 30)
        if out.strip():
            log(out.strip())
    log("migrating the database")
    run_step([python, "manage.py", "migrate", "--noinput", "-v", "0"], env, 600)
    log("collecting static files (the bundle included)")
    run_step([python, "manage.py", "collectstatic", "--noinput", "-v", "0"], env, 300)
    return env


def setup_django(env: dict[str, str]) -> Any:
    return common.setup_django(env, USERNAME)


def bench_endpoint(user: Any) -> None:
    """The model endpoint the LLM nodes name; it is never called."""
    from assistant_site.sharing import owner_permissions_grant
    from workflows import services
    from workflows.models import ModelEndpoint

    data: dict[str, Any] = {
        "kind": "chat",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "bench",
        "api_key": "",
        "enabled": True,
    }
    endpoint = ModelEndpoint.objects.filter(name=ENDPOINT_NAME).first()
    if endpoint is None:
        services.model_endpoint_create(actor=user, data={"name": ENDPOINT_NAME, **data})
    else:
        endpoint = services.model_endpoint_update(endpoint=endpoint, data=data)
        owner_permissions_grant(user=user, obj=endpoint)


@dataclass(frozen=True)
class BenchWorkflow:
    nodes: int
    edges: int
    workflow_id: str
    problems: list[str]


def create_workflow(user: Any, nodes: int) -> BenchWorkflow:
    from workflows import services

    graph = workflow_graph(nodes)
    workflow = services.workflow_create(actor=user, name=f"Editor benchmark, {nodes} nodes")
    services.workflow_draft_save(workflow=workflow, graph=graph, base_revision=0)
    problems = services.workflow_validate(graph=graph, actor=user)
    summary = [f"{p.get('code')}: {p.get('message')}" for p in problems]
    return BenchWorkflow(len(graph["nodes"]), len(graph["edges"]), str(workflow.pk), summary)


def delete_workflows(workflows: Sequence[BenchWorkflow]) -> None:
    from workflows import services
    from workflows.models import Workflow

    for item in workflows:
        workflow = Workflow.objects.filter(pk=item.workflow_id).first()
        if workflow is not None:
            services.workflow_delete(workflow=workflow)


def session_cookie(user: Any) -> tuple[str, str]:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value


# --- Browser ------------------------------------------------------------------------------


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise BenchError("chromium is not installed (apt-get install chromium, or CHROMIUM_PATH)")
    return path


@dataclass
class Session:
    """The browser and what every new context needs to be signed in."""

    browser: Any
    base_url: str
    cookie: tuple[str, str]

    def context(self) -> Any:
        context = self.browser.new_context(locale="en-US", viewport=VIEWPORT)
        context.set_default_timeout(LOAD_TIMEOUT_S * 1000)
        name, value = self.cookie
        context.add_cookies([{"name": name, "value": value, "url": self.base_url}])
        context.add_init_script(INIT_SCRIPT)
        return context

    def editor_url(self, workflow: BenchWorkflow) -> str:
        return f"{self.base_url}/studio/workflows/{workflow.workflow_id}"


@dataclass(frozen=True)
class OpenSample:
    first_nodes_ms: float
    settled_ms: float
    ttfb_ms: float
    bundle_ms: float  # the last script or stylesheet of /static/ received
    api_start_ms: float  # the editor's three GETs sent (the first of them)
    api_ms: float  # the editor's three GETs answered (the last of them)
    draft_ms: float  # the draft GET, request to answer
    long_tasks_ms: float  # main-thread tasks over 50 ms, until settled
    rendered: int
    zoom: float
    transfer_kib: float  # bytes over the wire for /static/ files (0 from the cache)


def viewport_zoom(transform: str) -> float:
    found = re.search(r"scale\(([0-9.eE+-]+)\)", transform)
    return float(found.group(1)) if found else math.nan


def wait_settled(page: Any) -> None:
    """Until the canvas shows nodes, the network is idle and nothing changed for QUIET_S.
    (Polled with evaluate: the studio's CSP forbids the eval that wait_for_function uses.)"""
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while not page.evaluate("document.querySelectorAll('.react-flow__node').length > 0"):
        if time.monotonic() > deadline:
            raise BenchError("the canvas showed no node within a minute")
        time.sleep(0.05)
    page.wait_for_load_state("networkidle")
    while time.monotonic() < deadline:
        quiet_ms = page.evaluate("performance.now() - window.__bench.lastChange")
        if quiet_ms >= QUIET_S * 1000:
            return
        time.sleep(max(0.05, QUIET_S - quiet_ms / 1000))
    raise BenchError("the canvas did not settle within a minute")


def read_open(page: Any) -> OpenSample:
    data = page.evaluate(READ_OPEN)
    if data["first"] is None or data["settled"] is None:
        raise BenchError("the canvas showed no node")
    resources = data["resources"]
    static = [r for r in resources if "/static/" in r["name"]]
    api = [
        r
        for r in resources
        if re.search(r"/api/(node-types/|workflows/[0-9a-f-]+/(draft/)?)(\?.*)?$", r["name"])
    ]
    if not static or len(api) < 3:
        raise BenchError(f"expected the bundle and three API requests, saw {len(resources)}")
    settled = float(data["settled"])
    long_tasks = sum(duration for start, duration in data["longTasks"] if start < settled)
    return OpenSample(
        first_nodes_ms=float(data["first"]),
        settled_ms=settled,
        ttfb_ms=float(data["ttfb"]),
        bundle_ms=max(float(r["end"]) for r in static),
        api_start_ms=min(float(r["start"]) for r in api),
        api_ms=max(float(r["end"]) for r in api),
        draft_ms=max(float(r["end"]) - float(r["start"]) for r in api if "/draft/" in r["name"]),
        long_tasks_ms=float(long_tasks),
        rendered=int(data["count"]),
        zoom=viewport_zoom(data["transform"]),
        transfer_kib=sum(float(r["transfer"]) for r in static) / 1024,
    )


@dataclass
class OpenResult:
    workflow: BenchWorkflow
    cold: list[OpenSample] = field(default_factory=list)
    warm: list[OpenSample] = field(default_factory=list)


def measure_open(session: Session, workflow: BenchWorkflow, repeat: int) -> OpenResult:
    result = OpenResult(workflow)
    url = session.editor_url(workflow)
    for number in range(repeat):
        context = session.context()
        try:
            page = context.new_page()
            page.goto(url)
            wait_settled(page)
            result.cold.append(read_open(page))
            page.reload()
            wait_settled(page)
            result.warm.append(read_open(page))
        finally:
            context.close()
        cold, warm = result.cold[-1], result.warm[-1]
        log(
            f"open {workflow.nodes} nodes #{number + 1}: cold {cold.settled_ms:.0f} ms, "
            f"warm {warm.settled_ms:.0f} ms, {cold.rendered} nodes in the DOM"
        )
    return result


@dataclass
class DragResult:
    view: str
    zoom: float
    rendered: int
    moves: int
    drags: int
    intervals_ms: list[float]
    missed: int  # timed drags after which the node was not where the mouse took it
    elapsed_s: float
    metrics: dict[str, float]  # CDP Performance metrics, seconds, summed over the timed drags
    commits: list[dict[str, Any]]  # of the counted drag (steps moves)
    added: int  # canvas node elements added to the DOM during the counted drag
    hook_error: str

    def per_move_ms(self, *names: str) -> float:
        return sum(self.metrics.get(name, 0.0) for name in names) * 1000 / max(self.moves, 1)


METRICS = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")


def performance_metrics(cdp: Any) -> dict[str, float]:
    answer = cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in answer["metrics"] if m["name"] in METRICS}


def drag(page: Any, start: tuple[float, float], delta: tuple[float, float], steps: int) -> None:
    """Press at start, move by delta in steps paced at MOVE_HZ, release."""
    x, y = start
    page.mouse.move(x, y)
    page.mouse.down()
    begin = time.perf_counter()
    for step in range(1, steps + 1):
        delay = begin + step / MOVE_HZ - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        page.mouse.move(x + delta[0] * step / steps, y + delta[1] * step / steps)
    page.mouse.up()


def zoom_of(page: Any) -> float:
    transform = page.evaluate(
        "document.querySelector('.react-flow__viewport')?.style.transform ?? ''"
    )
    return viewport_zoom(str(transform))


def rendered_nodes(page: Any) -> int:
    return int(page.evaluate("document.querySelectorAll('.react-flow__node').length"))


def click_zoom(page: Any, button: str) -> bool:
    control = page.locator(f".react-flow__controls-{button}")
    if control.is_disabled():
        return False
    control.click()
    page.wait_for_timeout(100)
    return True


def node_box(page: Any, node_id: str) -> tuple[float, float]:
    box = page.locator(f'.react-flow__node[data-id="{node_id}"] .flow-node-header').bounding_box()
    if box is None:
        raise BenchError(f"node {node_id} is not on the canvas")
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def show_view(page: Any, workflow: BenchWorkflow, view: str) -> str:
    """Zooms the canvas for the view; returns the id of the node to drag: the rendered node
    nearest the point from which a drag ends at the canvas' centre."""
    if view == "zoomed":
        # The zoom-in button multiplies by 1.2: stop at the zoom nearest 100 %.
        while abs(zoom_of(page) * 1.2 - 1) < abs(zoom_of(page) - 1):
            if not click_zoom(page, "zoomin"):
                break
    else:
        while rendered_nodes(page) < workflow.nodes and click_zoom(page, "zoomout"):
            pass
    page.wait_for_timeout(500)
    canvas = page.locator(".react-flow").bounding_box()
    if canvas is None:
        raise BenchError("no canvas")
    centre_x = canvas["x"] + canvas["width"] / 2 - DRAG_PX[0] / 2
    centre_y = canvas["y"] + canvas["height"] / 2 - DRAG_PX[1] / 2
    target = page.evaluate(PICK_NODE, [centre_x, centre_y])
    if target is None:
        raise BenchError("no node to drag")
    return str(target["id"])


def followed(before: tuple[float, float], after: tuple[float, float], delta: Any) -> bool:
    """Whether the node's header moved with the mouse (within a few pixels)."""
    error = math.hypot(after[0] - before[0] - delta[0], after[1] - before[1] - delta[1])
    return error <= DRAG_TOLERANCE_PX


def timed_drag(
    page: Any, cdp: Any, node_id: str, delta: tuple[float, float], steps: int
) -> tuple[list[float], dict[str, float], float, bool]:
    """(frame intervals in ms, CDP metrics spent, seconds, whether the node followed) of one
    drag of the node."""
    start = node_box(page, node_id)
    before = performance_metrics(cdp)
    page.evaluate("window.__bench.frames = []")
    began = time.perf_counter()
    drag(page, start, delta, steps)
    elapsed = time.perf_counter() - began
    page.wait_for_timeout(50)
    frames = page.evaluate(
        "(() => { const f = window.__bench.frames; window.__bench.frames = null; return f; })()"
    )
    after = performance_metrics(cdp)
    spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in METRICS}
    moved = followed(start, node_box(page, node_id), delta)
    return [b - a for a, b in itertools.pairwise(frames)], spent, elapsed, moved


def counted_drag(page: Any, node_id: str, steps: int) -> dict[str, Any]:
    """One more drag, not timed, with the render counter on (it costs time in each commit);
    tried again once if the node did not follow the mouse."""
    for _attempt in range(2):
        page.wait_for_timeout(1000)
        start = node_box(page, node_id)
        page.evaluate("window.__bench.startCounting()")
        drag(page, start, DRAG_PX, steps)
        page.wait_for_timeout(50)
        counted: dict[str, Any] = page.evaluate("window.__bench.stopCounting()")
        if followed(start, node_box(page, node_id), DRAG_PX):
            return counted
        log(f"the counted drag did not move {node_id}; trying again")
    raise BenchError(f"{node_id} did not follow the mouse in the counted drag")


def measure_drag(
    session: Session, workflow: BenchWorkflow, view: str, steps: int, drags: int
) -> DragResult:
    context = session.context()
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(session.editor_url(workflow))
        wait_settled(page)
        node_id = show_view(page, workflow, view)
        zoom, rendered = zoom_of(page), rendered_nodes(page)
        log(f"drag ({view}): zoom {zoom:.2f}, {rendered} nodes in the DOM, dragging {node_id}")
        page.evaluate("window.__bench.watching = false")
        intervals: list[float] = []
        metrics = dict.fromkeys(METRICS, 0.0)
        elapsed = 0.0
        missed = 0
        for number in range(drags * 2):
            sign = 1.0 if number % 2 == 0 else -1.0
            delta = (DRAG_PX[0] * sign, DRAG_PX[1] * sign)
            frames, spent, seconds, moved = timed_drag(page, cdp, node_id, delta, steps)
            intervals += frames
            elapsed += seconds
            missed += 0 if moved else 1
            for name, value in spent.items():
                metrics[name] += value
            # The validator's request (400 ms after the last change) and its answer.
            page.wait_for_timeout(1000)
        if missed:
            log(f"{missed} of {drags * 2} timed drags did not move {node_id} with the mouse")
        counted = counted_drag(page, node_id, steps)
        return DragResult(
            view=view,
            zoom=zoom,
            rendered=rendered,
            moves=steps * drags * 2,
            drags=drags * 2,
            intervals_ms=intervals,
            missed=missed,
            elapsed_s=elapsed,
            metrics=metrics,
            commits=list(counted["commits"]),
            added=int(counted["added"]),
            hook_error=str(counted["error"]),
        )
    finally:
        context.close()


# --- Report -------------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def p(values: Sequence[float], fraction: float) -> float:
    return percentile_ms(sorted(v / 1000 for v in values), fraction)


def open_rows(results: Sequence[OpenResult]) -> list[str]:
    lines = [
        "| Workflow | Load | Opens | First nodes p50 / p95 ms | Settled p50 / p95 ms | "
        "HTML first byte ms | Bundle in ms | API sent ms | API answered ms | Draft GET ms | "
        "Long tasks ms | "
        "Nodes in DOM | Zoom | Static KiB transferred |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        for label, samples in (("cold", result.cold), ("warm (reload)", result.warm)):
            if not samples:
                continue

            def median(attribute: str, samples: list[OpenSample] = samples) -> float:
                return statistics.median(float(getattr(s, attribute)) for s in samples)

            first = [s.first_nodes_ms for s in samples]
            settled = [s.settled_ms for s in samples]
            rendered = sorted({s.rendered for s in samples})
            lines.append(
                f"| {result.workflow.nodes} nodes, {result.workflow.edges} edges | {label} | "
                f"{len(samples)} | {fmt(p(first, 0.5))} / {fmt(p(first, 0.95))} | "
                f"{fmt(p(settled, 0.5))} / {fmt(p(settled, 0.95))} | "
                f"{fmt(median('ttfb_ms'))} | {fmt(median('bundle_ms'))} | "
                f"{fmt(median('api_start_ms'))} | {fmt(median('api_ms'))} | "
                f"{fmt(median('draft_ms'))} | {fmt(median('long_tasks_ms'))} | "
                f"{'/'.join(str(n) for n in rendered)} | {median('zoom'):.2f} | "
                f"{fmt(median('transfer_kib'), 1)} |"
            )
    return lines


def api_rows(timings: Sequence[ApiTiming]) -> list[str]:
    lines = [
        "| Request | Workflow | Requests | p50 ms | p95 ms | Answer KiB |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.label} | {t.nodes} nodes | {len(t.samples_s)} | "
            f"{fmt(percentile_ms(t.samples_s, 0.5), 1)} | "
            f"{fmt(percentile_ms(t.samples_s, 0.95), 1)} | {t.size / 1024:,.1f} |"
        )
    return lines


def drag_rows(results: Sequence[DragResult]) -> list[str]:
    lines = [
        "| View | Zoom | Nodes in DOM | Moves (drags) | Frames | Mean ms | p50 ms | p95 ms | "
        "Max ms | Frames > 33 ms | Script ms/move | Style+layout ms/move | Main-thread ms/move | "
        "Moves/s achieved |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        intervals = r.intervals_ms
        mean = statistics.fmean(intervals) if intervals else math.nan
        lines.append(
            f"| {view_label(r)} | {r.zoom:.2f} | {r.rendered} | {r.moves} ({r.drags}) | "
            f"{len(intervals)} | {fmt(mean, 1)} | {fmt(p(intervals, 0.5), 1)} | "
            f"{fmt(p(intervals, 0.95), 1)} | {fmt(max(intervals, default=math.nan), 1)} | "
            f"{sum(1 for i in intervals if i > SLOW_FRAME_MS)} | "
            f"{fmt(r.per_move_ms('ScriptDuration'), 2)} | "
            f"{fmt(r.per_move_ms('RecalcStyleDuration', 'LayoutDuration'), 2)} | "
            f"{fmt(r.per_move_ms('TaskDuration'), 2)} | "
            f"{r.moves / max(r.elapsed_s, 1e-9):.0f} |"
        )
    return lines


def render_rows(results: Sequence[DragResult], steps: int) -> list[str]:
    lines = [
        "| View | Commits / move | FlowNode renders / commit (mounts) | Node wrappers / commit | "
        "Node elements added to the DOM / move | Most nodes in the DOM | Components / commit | "
        "Components / commit by region |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        commits = r.commits
        count = max(len(commits), 1)

        def mean(key: str, commits: list[dict[str, Any]] = commits, count: int = count) -> str:
            return f"{sum(int(c[key]) for c in commits) / count:.1f}"

        regions: dict[str, int] = {}
        for commit in commits:
            for region, number in commit["regions"].items():
                regions[region] = regions.get(region, 0) + int(number)
        by_region = ", ".join(
            f"{name.removeprefix('react-flow__')} {number / count:.1f}"
            for name, number in sorted(regions.items(), key=lambda item: -item[1])
        )
        error = f" (hook error: {r.hook_error})" if r.hook_error else ""
        most = max((int(c["domNodes"]) for c in commits), default=0)
        lines.append(
            f"| {view_label(r)} | {len(commits) / steps:.1f} | {mean('flowNodes')} "
            f"({mean('flowNodeMounts')}) | {mean('nodeWrappers')} | {r.added / steps:.1f} | "
            f"{most} | {mean('components')} | {by_region}{error} |"
        )
    return lines


def view_label(result: DragResult) -> str:
    return {"zoomed": "zoomed in", "fitted": "whole graph in view"}[result.view]


def bundle_rows(files: Sequence[BundleFile]) -> list[str]:
    lines = [
        "| Entry | File | Kind | Raw KiB | gzip -9 KiB |",
        "|---|---|---|--:|--:|",
    ]
    for entry in dict.fromkeys(f.entry for f in files):
        mine = [f for f in files if f.entry == entry]
        for f in mine:
            lines.append(
                f"| {entry} | `{f.path}` | {f.kind} | {f.raw / 1024:,.1f} | "
                f"{f.gzipped / 1024:,.1f} |"
            )
        loaded = [f for f in mine if f.kind != LAZY]
        raw, gzipped = sum(f.raw for f in loaded), sum(f.gzipped for f in loaded)
        lines.append(
            f"| **{entry}** | **total** | | **{raw / 1024:,.1f}** | **{gzipped / 1024:,.1f}** |"
        )
    return lines


def report(
    *,
    started: datetime,
    command: str,
    load_before: str,
    load_after: str,
    results: Results,
    files: Sequence[BundleFile],
    dist: Path,
    steps: int,
) -> str:
    opens, api, drags = results.opens, results.api, results.drags
    workflows = [result.workflow for result in opens]
    problems = "; ".join(
        f"{w.nodes} nodes: {len(w.problems)} problems"
        + (f" ({', '.join(w.problems[:3])})" if w.problems else "")
        for w in workflows
    )
    lines = [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        *machine_lines(),
        f"- Browser: headless chromium {results.browser_version} (`{chromium_path()}`, "
        f"{' '.join(CHROMIUM_ARGS)}), Playwright {version('playwright')}, viewport "
        f"{VIEWPORT['width']}x{VIEWPORT['height']}",
        f"- Load average (1, 5, 15 min): {load_before} at the start, {load_after} at the end",
        f"- Command: `{command}`",
        f"- Server: `uvicorn assistant_site.asgi:application --workers 1`, `settings.base`, "
        f"DEBUG off, {results.database}, no Redis; bundle from `{dist}` collected and served by "
        "WhiteNoise (gzip)",
        f"- Validator on the generated graphs: {problems}",
        f"- Server log: {results.server_tracebacks} tracebacks",
        "",
        "Opening the editor (`/studio/workflows/<id>`), times from navigation start:",
        "",
        *open_rows(opens),
        "",
        "The same API requests one at a time (urllib, no browser, after the runs above):",
        "",
        *api_rows(api),
        "",
        f"Dragging one node, {steps} mouse moves per drag paced at {MOVE_HZ:.0f}/s over "
        f"{DRAG_PX[0]:.0f}x{DRAG_PX[1]:.0f} px, there and back (frame = interval between two "
        "requestAnimationFrame callbacks; per-move figures from the DevTools Performance "
        "metrics over the timed drags):",
        "",
        *drag_rows(drags),
        "",
        "React renders during one more drag of the same node (counted by a DevTools hook):",
        "",
        *render_rows(drags, steps),
        "",
        "Bundle (the files each entry loads at start, from the Vite manifest):",
        "",
        *bundle_rows(files),
    ]
    lines.append("")
    for result in drags:
        lines.append(
            f"- Drags ({view_label(result)}): the node followed the mouse in "
            f"{result.drags - result.missed} of {result.drags} drags (moves/s: each move waits "
            "until the page has handled the previous one)."
        )
    return "\n".join(lines)


# --- Main ---------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True)
class ApiTiming:
    label: str
    nodes: int
    samples_s: list[float]
    size: int  # bytes of the answer body (uncompressed)


def api_alone(
    base_url: str, cookie: tuple[str, str], workflow: BenchWorkflow, repeat: int
) -> list[ApiTiming]:
    """The editor's three GETs one at a time, without a browser: the server's share of the
    open time."""
    paths = {
        "`GET /api/workflows/<id>/`": f"/api/workflows/{workflow.workflow_id}/",
        "`GET /api/node-types/`": "/api/node-types/",
        "`GET /api/workflows/<id>/draft/`": f"/api/workflows/{workflow.workflow_id}/draft/",
    }
    headers = {"Cookie": f"{cookie[0]}={cookie[1]}", "Accept-Language": "en-US"}
    timings = []
    for label, path in paths.items():
        samples: list[float] = []
        size = 0
        for _ in range(repeat + 1):
            # http on a loopback port this script chose
            request = urllib.request.Request(base_url + path, headers=headers)  # noqa: S310
            began = time.perf_counter()
            with urllib.request.urlopen(request, timeout=LOAD_TIMEOUT_S) as response:  # noqa: S310
                size = len(response.read())
            samples.append(time.perf_counter() - began)
        timings.append(ApiTiming(label, workflow.nodes, sorted(samples[1:]), size))
    return timings


def run_browser(
    args: argparse.Namespace, base_url: str, cookie: tuple[str, str], workflows: list[BenchWorkflow]
) -> tuple[str, list[OpenResult], list[DragResult]]:
    from playwright.sync_api import sync_playwright

    large, small = workflows
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            session = Session(browser, base_url, cookie)
            # One unrecorded open: the server's first requests import and warm its code.
            log("warming the server up")
            measure_open(session, small, 1)
            opens = [
                measure_open(session, large, args.repeat),
                measure_open(session, small, args.repeat),
            ]
            drags = [
                measure_drag(session, large, view, args.steps, args.drags)
                for view in ("zoomed", "fitted")
            ]
            return str(browser.version), opens, drags
        finally:
            browser.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = " ".join(__doc__.split("\n\n")[0].split()) if __doc__ else None
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--nodes", type=int, default=200, help="nodes of the large workflow")
    parser.add_argument("--repeat", type=int, default=5, help="cold and warm opens each")
    parser.add_argument("--steps", type=int, default=60, help="mouse moves per drag")
    parser.add_argument("--drags", type=int, default=3, help="timed drags there and back")
    parser.add_argument(
        "--dist", type=Path, default=REPO / "frontend" / "dist", help="the built bundle"
    )
    parser.add_argument("--database-url", help="use this database as it is")
    args = parser.parse_args(argv)
    if not COMPARISON_NODES < args.nodes <= 5000:
        parser.error(f"--nodes must be within {COMPARISON_NODES + 1}-5000")
    if not 1 <= args.repeat <= 100 or not 5 <= args.steps <= 600 or not 1 <= args.drags <= 20:
        parser.error("--repeat must be within 1-100, --steps 5-600 and --drags 1-20")
    return args


@dataclass
class Results:
    database: str = ""
    browser_version: str = ""
    opens: list[OpenResult] = field(default_factory=list)
    api: list[ApiTiming] = field(default_factory=list)
    drags: list[DragResult] = field(default_factory=list)
    server_tracebacks: int = 0


def run(args: argparse.Namespace, dist: Path) -> Results:
    """Database, server, workflows, browser; the workflows are deleted at the end."""
    results = Results()
    database_url, results.database = choose_database(args.database_url)
    workflows: list[BenchWorkflow] = []
    with tempfile.TemporaryDirectory(prefix="bench-editor-") as tmp:
        var_dir = Path(tmp)
        env = prepare(var_dir, dist, database_url)
        user = setup_django(env)
        try:
            bench_endpoint(user)
            for nodes in (args.nodes, COMPARISON_NODES):
                workflows.append(create_workflow(user, nodes))
                log(f"workflow of {nodes} nodes: {len(workflows[-1].problems)} problems")
            cookie = session_cookie(user)
            port = free_port()
            base_url = f"http://{HOST}:{port}"
            with running_server(SERVERS[1], port, 1, env, var_dir):
                results.browser_version, results.opens, results.drags = run_browser(
                    args, base_url, cookie, workflows
                )
                log("timing the editor's API requests alone")
                for workflow in workflows:
                    results.api += api_alone(base_url, cookie, workflow, args.repeat * 2)
            server_log = (var_dir / "uvicorn.log").read_text(errors="replace")
            results.server_tracebacks = server_log.count("Traceback")
            if results.server_tracebacks:
                log(f"the server logged tracebacks; its log ends:\n{server_log[-4000:]}")
        finally:
            delete_workflows(workflows)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dist = args.dist if args.dist.is_absolute() else Path.cwd() / args.dist
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    load_before = load_average()
    command = shlex.join([".venv/bin/python", "bench/editor.py", *sys.argv[1:]])
    try:
        files = bundle_files(dist, read_manifest(dist))
        chromium_path()
        results = run(args, dist)
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; server stopped, workflows deleted")
        return 130
    print(
        report(
            started=started,
            command=command,
            load_before=load_before,
            load_after=load_average(),
            results=results,
            files=files,
            dist=args.dist,
            steps=args.steps,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
