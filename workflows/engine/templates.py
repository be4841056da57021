"""Sandboxed Jinja2 templates for node configs, with limits on size and time.

Templates read ``trigger``, ``conversation``, ``nodes.<id>.<output>`` and ``vars``. A template
can neither reach Python internals (the sandbox) nor run away: its source and its output are
capped in size, and rendering stops once its time budget is spent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_SOURCE_CHARS = 20_000
MAX_OUTPUT_CHARS = 200_000
RENDER_BUDGET_S = 0.5
ROOT_NAMES = ("trigger", "conversation", "nodes", "vars")


class TemplateError(Exception):
    """A template that cannot be compiled or rendered; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.reason = message
        self.line = line


class _BudgetedEnvironment(SandboxedEnvironment):
    deadline: float = 0.0
    # One operation can exhaust memory before any time check runs: "x" * 10**9, 9**9**9.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._check_time()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeats = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if repeats and len(seq) * times > MAX_OUTPUT_CHARS:
                    raise TemplateError("repetition result is too large")
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise TemplateError("exponent is too large")
        return super().call_binop(context, operator, left, right)

    def _check_time(self) -> None:
        if self.deadline and time.monotonic() > self.deadline:
            raise TemplateError(f"rendering took longer than {RENDER_BUDGET_S} s")

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._check_time()
        return super().getitem(obj, argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self._check_time()
        return super().call(__context, __obj, *args, **kwargs)


def _environment() -> _BudgetedEnvironment:
    environment = _BudgetedEnvironment(undefined=StrictUndefined, autoescape=False)
    sandboxed_range: Callable[..., Iterator[int]] = environment.globals["range"]  # type: ignore[assignment]

    def budgeted_range(*args: int) -> Iterator[int]:
        # A loop that prints nothing and calls nothing would otherwise never be checked.
        for number in sandboxed_range(*args):
            environment._check_time()
            yield number

    environment.globals["range"] = budgeted_range
    return environment


def _check_source(source: str) -> None:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateError(f"template is longer than {MAX_SOURCE_CHARS} characters")


def parse(source: str) -> nodes.Template:
    _check_source(source)
    try:
        return _environment().parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from exc


@dataclass(frozen=True)
class VariableReference:
    path: tuple[str, ...]  # e.g. ("nodes", "llm_1", "text")
    line: int


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        head = _chain(node.node)
        return None if head is None else (*head, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        head = _chain(node.node)
        return None if head is None else (*head, str(node.arg.value))
    return None


def references(source: str) -> list[VariableReference]:
    """Every variable path the template reads from its context, longest form only.

    Names the template binds itself (loop variables, ``set``) are not context reads.
    """
    tree = parse(source)
    bound = {
        target.name for target in tree.find_all(nodes.Name) if target.ctx in {"store", "param"}
    }
    found: dict[tuple[str, ...], int] = {}
    inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner:
            continue
        chain = _chain(node)
        if chain is None or chain[0] in bound:
            continue
        for child in _descendants(node):
            inner.add(id(child))
        if isinstance(node, nodes.Name) and node.ctx != "load":
            continue
        found.setdefault(chain, node.lineno)
    return [VariableReference(path, line) for path, line in found.items()]


def _descendants(node: nodes.Node) -> Iterator[nodes.Node]:
    for child in node.iter_child_nodes():
        yield child
        yield from _descendants(child)


_per_thread = threading.local()
_CACHE_LIMIT = 512


def _compiled(source: str) -> tuple[_BudgetedEnvironment, Template]:
    """The thread's environment and the compiled template, compiled once per thread.

    Compiling costs far more than rendering; an environment (with its deadline) is per thread
    because rendering is synchronous and Celery runs one run per thread.
    """
    environment: _BudgetedEnvironment | None = getattr(_per_thread, "environment", None)
    if environment is None:
        environment = _per_thread.environment = _environment()
        _per_thread.templates = {}
    cache: dict[str, Template] = _per_thread.templates
    template = cache.get(source)
    if template is None:
        _check_source(source)
        try:
            template = environment.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "syntax error", exc.lineno) from exc
        if len(cache) >= _CACHE_LIMIT:
            cache.pop(next(iter(cache)))
        cache[source] = template
    return environment, template


def render(source: str, context: dict[str, Any]) -> str:
    environment, template = _compiled(source)
    environment.deadline = time.monotonic() + RENDER_BUDGET_S
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"output is longer than {MAX_OUTPUT_CHARS} characters")
            environment._check_time()
            chunks.append(chunk)
    except TemplateError:
        raise
    except UndefinedError as exc:
        raise TemplateError(exc.message or "undefined variable", _error_line()) from exc
    except SecurityError as exc:
        raise TemplateError(f"not allowed: {exc}", _error_line()) from exc
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}", _error_line()) from exc
    return "".join(chunks)


def _error_line() -> int | None:
    # Jinja2 rewrites tracebacks so the template's own frame names the line it failed on.
    import sys

    traceback = sys.exc_info()[2]
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
