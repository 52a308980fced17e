"""Pure: a graph's definition as plain data, and its validation.

``GraphSpec`` is what a graph file holds and what ``service.show_graph`` returns; the
same validation serves the graph file, the Python API and the CLI, so a vertex is
refused for the same reason, with the same words, whichever way it came in.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_engine import dag, params
from pipeline_engine.errors import GraphError, GraphFileError, PipelineEngineError

NAME_MAX = 200
GRAPH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# No dots: ``VERTEX.input=value`` names one vertex's input on the command line.
VERTEX_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_RETRIES = 100
#: largest pool size accepted (a guard against typos, far above any machine's process count)
MAX_POOL_SIZE = 1_000_000

GRAPH_KEYS = ("name", "description", "vertices", "edges", "pools")
VERTEX_KEYS = ("name", "description", "script", "inputs", "timeout", "retries", "priority", "pool")


@dataclass(frozen=True)
class VertexSpec:
    name: str
    script: str
    description: str = ""
    #: normalised input schema, as ``params.schema_to_dict`` gives it
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: seconds, or None for no limit
    timeout: float | None = None
    retries: int = 0
    #: overrides the critical-path priority computed at each run's start (larger runs first)
    priority: float | None = None
    #: the concurrency pool its tracks take a slot of while they run
    pool: str | None = None

    def schema(self) -> dict[str, params.InputSpec]:
        return params.parse_schema(self.name, self.inputs)

    def to_dict(self) -> dict[str, Any]:
        """The graph-file form: keys with default values are left out."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["script"] = self.script
        if self.inputs:
            out["inputs"] = self.inputs
        if self.timeout is not None:
            out["timeout"] = int(self.timeout) if float(self.timeout).is_integer() else self.timeout
        if self.retries:
            out["retries"] = self.retries
        if self.priority is not None:
            out["priority"] = int(self.priority) if float(self.priority).is_integer() else self.priority
        if self.pool is not None:
            out["pool"] = self.pool
        return out


@dataclass(frozen=True)
class GraphSpec:
    name: str
    description: str = ""
    vertices: tuple[VertexSpec, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    #: pool sizes the graph file sets (name, size), applied when it is imported
    pools: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The graph-file form (YAML or JSON)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.pools:
            out["pools"] = dict(self.pools)
        out["vertices"] = [v.to_dict() for v in self.vertices]
        out["edges"] = [[t, h] for t, h in self.edges]
        return out

    def cycle(self) -> list[str] | None:
        return dag.find_cycle([v.name for v in self.vertices], self.edges)


def check_name(kind: str, name: Any, pattern: re.Pattern = VERTEX_NAME) -> str:
    """Return ``name`` if it is a valid graph or vertex name, else raise GraphError."""
    if not isinstance(name, str) or not name:
        raise GraphError(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > NAME_MAX or not pattern.fullmatch(name):
        allowed = "letters, digits, '_', '-'" + (", '.'" if pattern is GRAPH_NAME else "")
        raise GraphError(f"{kind} name {name!r} is not valid: use up to {NAME_MAX} of {allowed},"
                         " not starting with '-' or '.'")
    return name


def check_graph_name(name: Any) -> str:
    return check_name("graph", name, GRAPH_NAME)


def check_pool(name: Any, size: Any) -> tuple[str, int]:
    """A valid pool name and size, else GraphError naming the pool."""
    check_name("pool", name, GRAPH_NAME)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_POOL_SIZE:
        raise GraphError(f"pool '{name}': size must be an integer from 0 to {MAX_POOL_SIZE}, got {size!r}")
    return name, size


def make_vertex(name: Any, script: Any, *, description: Any = "", inputs: Any = None,
                timeout: Any = None, retries: Any = 0, priority: Any = None, pool: Any = None) -> VertexSpec:
    """Validate one vertex's fields; raise GraphError or InputSchemaError naming the vertex."""
    check_name("vertex", name)
    where = f"vertex '{name}'"
    if not isinstance(script, str) or not script.strip():
        raise GraphError(f"{where}: script must be a non-empty string")
    if "\x00" in script:
        raise GraphError(f"{where}: script contains a NUL character")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise GraphError(f"{where}: description must be a string")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise GraphError(f"{where}: timeout must be a positive number of seconds, got {timeout!r}")
        timeout = float(timeout)
    if retries is None:
        retries = 0
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise GraphError(f"{where}: retries must be an integer from 0 to {MAX_RETRIES}, got {retries!r}")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, (int, float)) or not math.isfinite(priority):
            raise GraphError(f"{where}: priority must be a number, got {priority!r}")
        priority = float(priority)
    if pool is not None:
        try:
            check_name("pool", pool, GRAPH_NAME)
        except GraphError as exc:
            raise GraphError(f"{where}: {exc}") from None
    if inputs is None:
        inputs = {}
    schema = params.parse_schema(name, inputs)
    # Refuses placeholders where a value could become code (arithmetic), naming the input.
    params.compile_script(name, script, schema)
    return VertexSpec(name=name, script=script, description=description,
                      inputs=params.schema_to_dict(schema), timeout=timeout, retries=retries, priority=priority,
                      pool=pool)


def vertex_from_dict(data: Any, where: str) -> VertexSpec:
    if not isinstance(data, Mapping):
        raise GraphFileError(f"{where}: must be a mapping with keys {', '.join(VERTEX_KEYS)}")
    unknown = [k for k in data if k not in VERTEX_KEYS]
    if unknown:
        name = data.get("name")
        at = f"vertex '{name}'" if isinstance(name, str) else where
        raise GraphFileError(f"{at}: unknown key {', '.join(repr(k) for k in unknown)}"
                             f" (allowed: {', '.join(VERTEX_KEYS)})")
    for key in ("name", "script"):
        if key not in data:
            at = f"vertex '{data['name']}'" if isinstance(data.get("name"), str) else where
            raise GraphFileError(f"{at}: missing key '{key}'")
    return make_vertex(data["name"], data["script"], description=data.get("description", ""),
                       inputs=data.get("inputs"), timeout=data.get("timeout"),
                       retries=data.get("retries", 0), priority=data.get("priority"), pool=data.get("pool"))


def graph_from_dict(data: Any) -> GraphSpec:
    """Validate a graph file's content. Every problem found is reported at once, one per
    line, in a GraphFileError whose ``problems`` lists them."""
    if not isinstance(data, Mapping):
        raise GraphFileError("graph file: the top level must be a mapping with keys "
                             + ", ".join(GRAPH_KEYS))
    problems: list[str] = []
    unknown = [k for k in data if k not in GRAPH_KEYS]
    if unknown:
        problems.append(f"graph: unknown key {', '.join(repr(k) for k in unknown)}"
                        f" (allowed: {', '.join(GRAPH_KEYS)})")
    name = data.get("name")
    try:
        check_graph_name(name)
    except GraphError as exc:
        problems.append(str(exc) if "name" in data else "graph: missing key 'name'")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        problems.append("graph: description must be a string")

    raw_vertices = data.get("vertices")
    vertices: list[VertexSpec] = []
    seen: set[str] = set()
    if not isinstance(raw_vertices, list) or not raw_vertices:
        problems.append("graph: 'vertices' must be a non-empty list")
        raw_vertices = []
    for i, raw in enumerate(raw_vertices):
        try:
            vertex = vertex_from_dict(raw, f"vertices[{i}]")
        except PipelineEngineError as exc:
            problems.append(str(exc))
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                seen.add(raw["name"])  # known, so its edges are not reported as unknown too
            continue
        if vertex.name in seen:
            problems.append(f"vertex '{vertex.name}' is declared twice")
            continue
        seen.add(vertex.name)
        vertices.append(vertex)

    pools: list[tuple[str, int]] = []
    raw_pools = data.get("pools") or {}
    if not isinstance(raw_pools, Mapping):
        problems.append("graph: 'pools' must be a mapping of pool name to size")
        raw_pools = {}
    for pool, size in raw_pools.items():
        try:
            pools.append(check_pool(pool, size))
        except GraphError as exc:
            problems.append(str(exc))

    raw_edges = data.get("edges", []) or []
    edges: list[tuple[str, str]] = []
    if not isinstance(raw_edges, list):
        problems.append("graph: 'edges' must be a list of [tail, head] pairs")
        raw_edges = []
    pairs: set[tuple[str, str]] = set()
    for i, raw in enumerate(raw_edges):
        where = f"edge {i} {raw!r}"
        if not (isinstance(raw, (list, tuple)) and len(raw) == 2 and all(isinstance(x, str) for x in raw)):
            problems.append(f"{where}: must be a [tail, head] pair of vertex names")
            continue
        tail, head = raw
        missing = [x for x in (tail, head) if x not in seen]
        if missing:
            problems.append(f"edge {tail} -> {head}: unknown vertex {', '.join(repr(m) for m in missing)}")
        elif tail == head:
            problems.append(f"edge {tail} -> {head}: a vertex cannot depend on itself")
        elif (tail, head) in pairs:
            problems.append(f"edge {tail} -> {head} is declared twice")
        else:
            pairs.add((tail, head))
            edges.append((tail, head))
    if problems:
        err = GraphFileError("\n".join(problems))
        err.problems = problems
        raise err
    return GraphSpec(name=name, description=description, vertices=tuple(vertices), edges=tuple(edges),
                     pools=tuple(pools))
