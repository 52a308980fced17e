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

from pipeline_engine import dag, inputtypes, limits, rendering, shell
from pipeline_engine.errors import GraphError, GraphFileError, PipelineEngineError

NAME_MAX = 200
GRAPH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# No dots: ``VERTEX.input=value`` names one vertex's input on the command line.
VERTEX_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
MAX_RETRIES = 100
#: longest timeout accepted, in seconds (a year; leave it out for no limit)
MAX_TIMEOUT = 366 * 86400
#: largest priority override accepted, either sign (integers are exact up to 2**53)
MAX_PRIORITY = 1e15
#: largest pool size accepted (a guard against typos, far above any machine's process count)
MAX_POOL_SIZE = 1_000_000

#: longest wait before a retry, in seconds (a year): ``retry_delay`` and each wait it grows to
MAX_RETRY_DELAY = MAX_TIMEOUT
#: largest ``retry_backoff`` factor accepted
MAX_RETRY_BACKOFF = 100
#: longest working directory accepted, in characters (what the database keeps)
CWD_MAX = 1024
#: variables a vertex's ``env`` may set at most
ENV_MAX = 1000
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: of the variables bash treats specially (``shell.special_variable``), those an ``env`` may set:
#: the graph's author chooses where programs come from, as its script could
ENV_ALLOWED = frozenset({"PATH"})
#: prefixes the engine's own variables use: its settings and marker, and the inputs' PE_<name>
ENV_RESERVED_PREFIXES = ("PIPELINE_ENGINE_", rendering.ENV_PREFIX)

GRAPH_KEYS = ("name", "description", "vertices", "edges", "pools", "schedules")
VERTEX_KEYS = ("name", "description", "script", "inputs", "timeout", "retries", "retry_delay", "retry_backoff",
               "priority", "pool", "cwd", "env")


@dataclass(frozen=True)
class VertexSpec:
    name: str
    script: str
    description: str = ""
    #: normalised input schema, as ``inputtypes.schema_to_dict`` gives it
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: seconds, or None for no limit
    timeout: float | None = None
    retries: int = 0
    #: overrides the critical-path priority computed at each run's start (larger runs first)
    priority: float | None = None
    #: the concurrency pool its tracks take a slot of while they run
    pool: str | None = None
    #: seconds between a failed attempt and the next one (``retry_wait``)
    retry_delay: float = 0.0
    #: each wait before a retry is this factor times the one before
    retry_backoff: float = 1.0
    #: the directory its script runs in: absolute, or relative to the worker's; None: the worker's
    cwd: str | None = None
    #: variables added to its script's environment, name -> literal text
    env: dict[str, str] = field(default_factory=dict)

    def schema(self) -> dict[str, inputtypes.InputSpec]:
        return inputtypes.parse_schema(self.name, self.inputs)

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
        if self.retry_delay:
            out["retry_delay"] = _plain(self.retry_delay)
        if self.retry_backoff != 1:
            out["retry_backoff"] = _plain(self.retry_backoff)
        if self.priority is not None:
            out["priority"] = int(self.priority) if float(self.priority).is_integer() else self.priority
        if self.pool is not None:
            out["pool"] = self.pool
        if self.cwd is not None:
            out["cwd"] = self.cwd
        if self.env:
            out["env"] = dict(self.env)
        return out


def _plain(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def retry_wait(delay: float, backoff: float, failed: int) -> float:
    """Seconds to wait after attempt ``failed`` (1-based) failed, before the next one:
    ``delay * backoff ** (failed - 1)``, at most MAX_RETRY_DELAY."""
    if delay <= 0:
        return 0.0
    try:
        wait = delay * backoff ** max(failed - 1, 0)
    except OverflowError:
        return float(MAX_RETRY_DELAY)
    return min(wait, float(MAX_RETRY_DELAY))


@dataclass(frozen=True)
class GraphSpec:
    name: str
    description: str = ""
    vertices: tuple[VertexSpec, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    #: pool sizes the graph file sets (name, size), applied when it is imported
    pools: tuple[tuple[str, int], ...] = ()
    #: the schedules the graph file sets (``schedules.ScheduleSpec``), applied when it is imported
    schedules: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The graph-file form (YAML or JSON)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.pools:
            out["pools"] = dict(self.pools)
        out["vertices"] = [v.to_dict() for v in self.vertices]
        out["edges"] = [[t, h] for t, h in self.edges]
        if self.schedules:
            out["schedules"] = [x.to_dict() for x in self.schedules]
        return out

    def cycle(self) -> list[str] | None:
        return dag.find_cycle([v.name for v in self.vertices], self.edges)


def check_name(kind: str, name: Any, pattern: re.Pattern = VERTEX_NAME) -> str:
    """Return ``name`` if it is a valid graph or vertex name, else raise GraphError."""
    if not isinstance(name, str) or not name:
        raise GraphError(f"{kind} name must be a non-empty string, got {inputtypes.shown(name)}")
    if len(name) > NAME_MAX or not pattern.fullmatch(name):
        allowed = "letters, digits, '_', '-'" + (", '.'" if pattern is GRAPH_NAME else "")
        raise GraphError(f"{kind} name {inputtypes.shown(name)} is not valid: use up to {NAME_MAX} of {allowed},"
                         " not starting with '-' or '.'")
    return name


def check_graph_name(name: Any) -> str:
    return check_name("graph", name, GRAPH_NAME)


def check_pool(name: Any, size: Any) -> tuple[str, int]:
    """A valid pool name and size, else GraphError naming the pool."""
    check_name("pool", name, GRAPH_NAME)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_POOL_SIZE:
        raise GraphError(f"pool '{name}': size must be an integer from 0 to {MAX_POOL_SIZE}, got {inputtypes.shown(size)}")
    return name, size


def _number(value: Any) -> bool:
    """A real number (not a bool, not NaN or infinite); a huge int is one, and compares."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _argument_problems(vertex: str, template: rendering.Template, schema: Mapping[str, inputtypes.InputSpec]) -> list[str]:
    """What would keep bash from starting this vertex with its defaults, or with any of its
    choices (see ``limits``); a run's own values are checked again when it starts."""
    try:
        rendered = rendering.render(template, {n: s.default for n, s in schema.items()}, schema)
    except PipelineEngineError:
        return []  # a default the run replaces; start_run checks what really runs
    problems = limits.check(vertex, rendered.script, rendered.env, what="default")
    for n, s in schema.items():
        if s.choices:
            longest = max(s.choices, key=lambda c: len(c.encode("utf-8", "surrogateescape")))
            problems += limits.check(vertex, "", {rendering.ENV_PREFIX + n: longest}, what="longest choice")
    return list(dict.fromkeys(problems))


def secret_clashes(schemas: Mapping[str, Mapping[str, inputtypes.InputSpec]]) -> list[str]:
    """A problem per input name that some vertices declare ``secret`` and others not: a plain
    ``name=value`` parameter would reach those others in clear (stored, shown, logged)."""
    kinds: dict[str, dict[str, list[str]]] = {}
    for vertex, schema in schemas.items():
        for name, spec in schema.items():
            kinds.setdefault(name, {}).setdefault(spec.type, []).append(vertex)
    problems = []
    for name, by_type in kinds.items():
        if "secret" in by_type and len(by_type) > 1:
            where = "; ".join(f"{kind} in vertex {', '.join(repr(v) for v in vertices)}"
                              for kind, vertices in by_type.items())
            problems.append(f"input '{name}' is secret in some vertices and not in others ({where}): its value"
                            f" would be stored and shown in clear for the others; declare '{name}' secret in every"
                            " vertex, or give the other input another name")
    return problems


def _cwd_problem(cwd: Any) -> str | None:
    if not isinstance(cwd, str) or not cwd:
        return f"cwd must be a non-empty string (a directory), got {inputtypes.shown(cwd)}"
    if "\x00" in cwd:
        return "cwd contains a NUL character"
    if len(cwd) > CWD_MAX:
        return f"cwd is {len(cwd)} characters long, over the {CWD_MAX} the database keeps"
    if cwd.startswith("~"):
        return f"cwd {inputtypes.shown(cwd)}: '~' is not expanded; give an absolute path"
    return None


def _env_problems(env: Any) -> list[str]:
    """What is wrong with an ``env`` mapping: names must be shell identifiers that neither bash
    (``shell.special_variable``, but PATH) nor the engine reserves; values literal strings."""
    if not isinstance(env, Mapping):
        return [f"env must be a mapping of variable names to strings, got {inputtypes.shown(env)}"]
    if len(env) > ENV_MAX:
        return [f"env sets {len(env)} variables, over the limit of {ENV_MAX}"]
    problems = []
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key) or len(key) > NAME_MAX:
            problems.append(f"env: {inputtypes.shown(key)} is not a valid variable name (letters, digits and '_',"
                            f" not starting with a digit, up to {NAME_MAX})")
            continue
        if key.startswith(ENV_RESERVED_PREFIXES):
            problems.append(f"env: {key} is reserved: the engine sets the variables that start with"
                            f" {' or '.join(ENV_RESERVED_PREFIXES)}"
                            f" (inputs reach a script as {rendering.ENV_PREFIX}<name>)")
        elif key == "IFS" or shell.special_variable(key) and key not in ENV_ALLOWED:
            problems.append(f"env: {key} cannot be set: bash treats it specially (it changes what bash runs or"
                            " how it reads the script)")
        elif not isinstance(value, str):
            problems.append(f"env: {key} must be a string, got {inputtypes.shown(value)} (quote it)")
        elif "\x00" in value:
            problems.append(f"env: {key} contains a NUL character")
        elif (size := len(f"{key}={value}".encode("utf-8", "surrogateescape")) + 1) > limits.MAX_ARG_STRLEN:
            problems.append(f"env: {key}=... is {size} bytes, over the kernel's limit of {limits.MAX_ARG_STRLEN}"
                            " bytes for one environment variable (MAX_ARG_STRLEN, name and NUL counted)")
    return problems


def make_vertex(name: Any, script: Any, *, description: Any = "", inputs: Any = None,
                timeout: Any = None, retries: Any = 0, priority: Any = None, pool: Any = None,
                retry_delay: Any = 0, retry_backoff: Any = 1, cwd: Any = None, env: Any = None) -> VertexSpec:
    """Validate one vertex's fields; raise GraphError or InputSchemaError naming the vertex and
    every problem found (one per line)."""
    check_name("vertex", name)
    where = f"vertex '{name}'"
    problems: list[PipelineEngineError] = []
    script_ok = isinstance(script, str) and bool(script.strip()) and "\x00" not in script
    if not isinstance(script, str) or not script.strip():
        problems.append(GraphError(f"{where}: script must be a non-empty string"))
    elif "\x00" in script:
        problems.append(GraphError(f"{where}: script contains a NUL character"))
    if description is None:
        description = ""
    if not isinstance(description, str):
        problems.append(GraphError(f"{where}: description must be a string"))
    if timeout is not None:
        if not _number(timeout) or not 0 < timeout <= MAX_TIMEOUT:
            problems.append(GraphError(f"{where}: timeout must be a positive number of seconds up to {MAX_TIMEOUT}"
                                       f" (a year), got {inputtypes.shown(timeout)}"))
        else:
            timeout = float(timeout)
    if retries is None:
        retries = 0
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        problems.append(GraphError(f"{where}: retries must be an integer from 0 to {MAX_RETRIES},"
                                   f" got {inputtypes.shown(retries)}"))
    if retry_delay is None:
        retry_delay = 0
    if not _number(retry_delay) or not 0 <= retry_delay <= MAX_RETRY_DELAY:
        problems.append(GraphError(f"{where}: retry_delay must be a number of seconds from 0 to {MAX_RETRY_DELAY}"
                                   f" (a year), got {inputtypes.shown(retry_delay)}"))
    else:
        retry_delay = float(retry_delay)
    if retry_backoff is None:
        retry_backoff = 1
    if not _number(retry_backoff) or not 1 <= retry_backoff <= MAX_RETRY_BACKOFF:
        problems.append(GraphError(f"{where}: retry_backoff must be a factor from 1 to {MAX_RETRY_BACKOFF},"
                                   f" got {inputtypes.shown(retry_backoff)}"))
    else:
        retry_backoff = float(retry_backoff)
    if cwd is not None and (why := _cwd_problem(cwd)):
        problems.append(GraphError(f"{where}: {why}"))
    env_problems = [] if env is None else _env_problems(env)
    problems += [GraphError(f"{where}: {p}") for p in env_problems]
    env = {} if env is None or env_problems else dict(env)
    if priority is not None:
        if not _number(priority) or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            problems.append(GraphError(f"{where}: priority must be a number from {-MAX_PRIORITY:g} to"
                                       f" {MAX_PRIORITY:g}, got {inputtypes.shown(priority)}"))
        else:
            priority = float(priority)
    if pool is not None:
        try:
            check_name("pool", pool, GRAPH_NAME)
        except GraphError as exc:
            problems.append(GraphError(f"{where}: {exc}"))
    schema = None
    try:
        schema = inputtypes.parse_schema(name, {} if inputs is None else inputs)
    except PipelineEngineError as exc:
        problems.append(exc)
    if schema is not None and script_ok:
        try:
            # Refuses placeholders where a value could become code, naming the input.
            template = rendering.compile_script(name, script, schema)
            problems += [GraphError(p) for p in _argument_problems(name, template, schema)]
        except PipelineEngineError as exc:
            problems.append(exc)
    _raise(problems)
    return VertexSpec(name=name, script=script, description=description,
                      inputs=inputtypes.schema_to_dict(schema or {}), timeout=timeout, retries=retries, priority=priority,
                      pool=pool, retry_delay=retry_delay, retry_backoff=retry_backoff, cwd=cwd, env=env)


def _raise(problems: list[PipelineEngineError]) -> None:
    """Raise the one problem as it is, or all of them at once (one per line) as a GraphError."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise GraphError("\n".join(str(p) for p in problems))


def _at(data: Mapping, where: str) -> str:
    """How a vertex not yet validated is named in an error: by its name, or its place in the file."""
    name = data.get("name")
    if not isinstance(name, str):
        return where
    return f"vertex '{name}'" if len(name) <= NAME_MAX else f"vertex {inputtypes.shown(name)}"


def vertex_from_dict(data: Any, where: str) -> VertexSpec:
    if not isinstance(data, Mapping):
        raise GraphFileError(f"{where}: must be a mapping with keys {', '.join(VERTEX_KEYS)}")
    problems: list[PipelineEngineError] = []
    unknown = [k for k in data if k not in VERTEX_KEYS]
    if unknown:
        problems.append(GraphFileError(f"{_at(data, where)}: unknown key"
                                       f" {', '.join(inputtypes.shown(k) for k in unknown)}"
                                       f" (allowed: {', '.join(VERTEX_KEYS)})"))
    for key in ("name", "script"):
        if key not in data:
            problems.append(GraphFileError(f"{_at(data, where)}: missing key '{key}'"))
    if "name" in data:
        try:
            vertex = make_vertex(data["name"], data.get("script"), description=data.get("description", ""),
                                 inputs=data.get("inputs"), timeout=data.get("timeout"),
                                 retries=data.get("retries", 0), priority=data.get("priority"), pool=data.get("pool"),
                                 retry_delay=data.get("retry_delay", 0), retry_backoff=data.get("retry_backoff", 1),
                                 cwd=data.get("cwd"), env=data.get("env"))
        except PipelineEngineError as exc:
            if "script" in data:
                problems.append(exc)
            else:  # "missing key 'script'" says it already
                problems += [GraphError(line) for line in str(exc).splitlines()
                             if not line.endswith("script must be a non-empty string")]
        else:
            if not problems:
                return vertex
    _raise(problems)
    raise GraphFileError(f"{where}: not a valid vertex")  # not reached: there is a problem


def _given(data: Mapping, key: str, default: Any) -> Any:
    """A key's value; left out or null (YAML's empty value) is ``default``, but a false, 0 or ""
    of the wrong type is still that value, to be refused."""
    value = data.get(key)
    return default if value is None else value


def graph_from_dict(data: Any) -> GraphSpec:
    """Validate a graph file's content. Every problem found is reported at once, one per
    line, in a GraphFileError whose ``problems`` lists them."""
    if not isinstance(data, Mapping):
        raise GraphFileError("graph file: the top level must be a mapping with keys "
                             + ", ".join(GRAPH_KEYS))
    problems: list[str] = []
    unknown = [k for k in data if k not in GRAPH_KEYS]
    if unknown:
        problems.append(f"graph: unknown key {', '.join(inputtypes.shown(k) for k in unknown)}"
                        f" (allowed: {', '.join(GRAPH_KEYS)})")
    name: Any = data.get("name")  # a valid name once no problem is found
    try:
        check_graph_name(name)
    except GraphError as exc:
        problems.append(str(exc) if "name" in data else "graph: missing key 'name'")
    description = _given(data, "description", "")
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
    raw_pools = _given(data, "pools", {})
    if not isinstance(raw_pools, Mapping):
        problems.append("graph: 'pools' must be a mapping of pool name to size")
        raw_pools = {}
    for pool, size in raw_pools.items():
        try:
            pools.append(check_pool(pool, size))
        except GraphError as exc:
            problems.append(str(exc))

    raw_edges = _given(data, "edges", [])
    edges: list[tuple[str, str]] = []
    if not isinstance(raw_edges, list):
        problems.append("graph: 'edges' must be a list of [tail, head] pairs")
        raw_edges = []
    pairs: set[tuple[str, str]] = set()
    for i, raw in enumerate(raw_edges):
        where = f"edge {i} {inputtypes.shown(raw)}"
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
    found_schedules = _schedules(data, name, problems)
    if problems:
        err = GraphFileError("\n".join(problems))
        err.problems = problems
        raise err
    return GraphSpec(name=name, description=description, vertices=tuple(vertices), edges=tuple(edges),
                     pools=tuple(pools), schedules=tuple(found_schedules))


def _schedules(data: Mapping, graph: Any, problems: list[str]) -> list:
    """A graph file's ``schedules:``, each checked (its problems added to ``problems``)."""
    from pipeline_engine import schedules  # it builds on this module

    raw = _given(data, "schedules", [])
    if not isinstance(raw, list):
        problems.append("graph: 'schedules' must be a list of schedules")
        return []
    out, names = [], set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            problems.append(f"schedules[{i}]: must be a mapping with keys {', '.join(schedules.FILE_KEYS)}")
            continue
        unknown = [k for k in entry if k not in schedules.FILE_KEYS]
        label = f"schedule '{entry['name']}'" if isinstance(entry.get("name"), str) else f"schedules[{i}]"
        if unknown:
            problems.append(f"{label}: unknown key {', '.join(inputtypes.shown(k) for k in unknown)}"
                            f" (allowed: {', '.join(schedules.FILE_KEYS)})")
            continue
        try:
            found = schedules.spec_from(entry.get("name"), graph if isinstance(graph, str) else "graph",
                                        **{k: v for k, v in entry.items() if k != "name" and v is not None})
        except PipelineEngineError as exc:
            problems.append(str(exc))
            continue
        if found.name in names:
            problems.append(f"schedule '{found.name}' is declared twice")
            continue
        names.add(found.name)
        out.append(found)
    return out
