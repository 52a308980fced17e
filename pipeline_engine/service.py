"""The use cases: what the CLI (and later the API) call. Each function is one transaction
on the caller's ``Database``: on any error nothing is written.

    >>> from pipeline_engine import connect, service
    >>> db = connect("sqlite:///demo.db")
    >>> service.create_graph(db, "hello")
    >>> service.add_vertex(db, "hello", "greet", "echo hello {who}", inputs={"who": {"type": "str"}})
    >>> service.check_graph(db, "hello"); service.seal_graph(db, "hello")
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from pipeline_engine import dag, diff, graphfile, limits, params, recovery, store
from pipeline_engine.db import Database, _first_line
from pipeline_engine.errors import (
    AlreadyExistsError,
    CycleError,
    GraphError,
    GraphStatusError,
    NotFoundError,
    ParameterError,
    PoolInUseError,
    RunStateError,
    SealedGraphError,
)
from pipeline_engine.models import Edge, Graph, Vertex, storable
from pipeline_engine.spec import (
    GRAPH_NAME,
    GraphSpec,
    VertexSpec,
    check_graph_name,
    check_name,
    check_pool,
    graph_from_dict,
    make_vertex,
    secret_clashes,
)
from pipeline_engine.states import TRACK_FINISHED, GraphStatus, PipelineState, TrackState, run_is

_UNSET: Any = object()


# --- what the service returns ------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class GraphInfo:
    name: str
    description: str
    status: str
    vertices: int
    edges: int
    created_at: datetime
    updated_at: datetime
    sealed_at: datetime | None
    #: what else the operation changed, for the user to read (an import's pool sizes)
    notes: tuple[str, ...] = ()
    #: what the check the operation made warns about (as ``graph check``), if it made one
    warnings: tuple[str, ...] = ()
    #: which version of the name this is (1, 2, 3...)
    version: int = 1
    #: the newest sealed version of the name: the one ``run NAME`` runs (None: none yet)
    sealed_version: int | None = None
    #: an import found the newest sealed version identical to the file and created nothing
    unchanged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "description": self.description, "status": self.status,
                "vertices": self.vertices, "edges": self.edges, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at), "sealed_at": _iso(self.sealed_at),
                "sealed_version": self.sealed_version}


@dataclass(frozen=True)
class VersionInfo:
    """One version of a graph name, as ``graph versions`` lists it."""

    version: int
    status: str
    created_at: datetime
    sealed_at: datetime | None
    #: how many runs it has
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "status": self.status, "created_at": _iso(self.created_at),
                "sealed_at": _iso(self.sealed_at), "runs": self.runs}


@dataclass(frozen=True)
class GraphDetail:
    """A graph's definition and its status."""

    info: GraphInfo
    spec: GraphSpec

    def to_dict(self) -> dict[str, Any]:
        out = self.info.to_dict()
        out["vertices"] = [{"name": v.name, "description": v.description, "script": v.script,
                            "inputs": v.inputs, "timeout": v.timeout, "retries": v.retries,
                            "retry_delay": v.retry_delay, "retry_backoff": v.retry_backoff,
                            "priority": v.priority, "pool": v.pool, "cwd": v.cwd, "env": dict(v.env)}
                           for v in self.spec.vertices]
        out["edges"] = [[t, h] for t, h in self.spec.edges]
        out["pools"] = dict(self.spec.pools)
        return out


@dataclass(frozen=True)
class CheckResult:
    graph: str
    status: str
    #: a topological order of the vertices (Kahn's)
    order: list[str]
    #: things that are allowed but probably unintended, e.g. a {word} that names no input
    warnings: list[str] = field(default_factory=list)
    #: the version checked: the newest
    version: int = 1


def _info(s: Session, graph: Graph) -> GraphInfo:
    return _info_counts(s, graph, *store.counts(s, graph.id))


def _info_counts(s: Session | None, graph: Graph, n_vertices: int, n_edges: int,
                 sealed_version: int | None = None) -> GraphInfo:
    """``graph``'s info; the newest sealed version of its name is read in ``s`` if given."""
    if s is not None:
        sealed = store.newest_sealed(s, graph.name)
        sealed_version = sealed.version if sealed is not None else None
    return GraphInfo(name=graph.name, description=graph.description, status=graph.status,
                     vertices=n_vertices, edges=n_edges, created_at=graph.created_at,
                     updated_at=graph.updated_at, sealed_at=graph.sealed_at, version=graph.version,
                     sealed_version=sealed_version)


def _vertex_spec(v: Vertex) -> VertexSpec:
    return VertexSpec(name=v.name, script=v.script, description=v.description, inputs=v.inputs,
                      timeout=v.timeout, retries=v.retries, priority=v.priority, pool=v.pool,
                      retry_delay=v.retry_delay, retry_backoff=v.retry_backoff, cwd=v.cwd, env=dict(v.env or {}))


def _spec(s: Session, graph: Graph) -> GraphSpec:
    """The graph's definition, with the sizes of the pools its vertices name (those that
    exist), so that its graph file brings them along."""
    vertices = tuple(_vertex_spec(v) for v in store.vertices(s, graph.id))
    pools = store.find_pools(s, {v.pool for v in vertices if v.pool is not None})
    return GraphSpec(name=graph.name, description=graph.description, vertices=vertices,
                     edges=tuple(store.edge_names(s, graph.id)),
                     pools=tuple((name, pool.size) for name, pool in pools.items()))


# --- transactions ---------------------------------------------------------------------

@contextmanager
def _write(db: Database) -> Iterator[Session]:
    try:
        with db.transaction(write=True) as s:
            yield s
    except sa_exc.IntegrityError as exc:
        # Pre-checks give the precise messages; this is a concurrent writer winning a race.
        raise GraphError(f"the database refused the change (a concurrent edit?): {_first_line(exc.orig)}") from exc


def _editable(s: Session, name: str) -> Graph:
    """The newest version of the graph, locked for writing, which must not be sealed."""
    graph = store.get_graph(s, name, lock=True)
    if graph.status == GraphStatus.SEALED:
        raise SealedGraphError(f"graph '{name}' version {graph.version} is sealed and cannot change: start version"
                               f" {graph.version + 1} with service.new_version(db, {name!r}), or import a changed"
                               f" graph file (graph import FILE)")
    return graph


def _text(where: str, what: str, value: str) -> None:
    """Refuse free text no database stores as written: NUL (nor can bash run it), or lone
    surrogates (bytes that were not UTF-8, as Python keeps them)."""
    if "\x00" in value:
        raise GraphError(f"{where}: {what} contains a NUL character")
    if storable(value) != value:
        raise GraphError(f"{where}: {what} is not valid UTF-8 text")


def _vertex_text(spec: VertexSpec) -> VertexSpec:
    _text(f"vertex '{spec.name}'", "script", spec.script)
    _text(f"vertex '{spec.name}'", "description", spec.description)
    if spec.cwd is not None:
        _text(f"vertex '{spec.name}'", "cwd", spec.cwd)
    for key, value in spec.env.items():
        _text(f"vertex '{spec.name}'", f"env {key}", value)
    return spec


def _new_graph(s: Session, name: str, description: str) -> Graph:
    check_graph_name(name)
    _check_description(name, description)
    if store.find_graph(s, name) is not None:
        raise AlreadyExistsError(f"graph '{name}' already exists")
    return store.create_graph(s, name, description)


def _check_description(name: str, description: str) -> None:
    if not isinstance(description, str):
        raise GraphError(f"graph '{name}': description must be a string")
    _text(f"graph '{name}'", "description", description)


def _label(graph: Graph) -> str:
    return f"graph '{graph.name}' version {graph.version}"


# --- graphs -------------------------------------------------------------------------------

def create_graph(db: Database, name: str, description: str = "") -> GraphInfo:
    """Create an empty draft graph: version 1 of a new name."""
    with _write(db) as s:
        return _info_counts(None, _new_graph(s, name, description or ""), 0, 0)


def new_version(db: Database, name: str) -> GraphInfo:
    """Start the next version of a graph: a draft copy of its newest version, which must be
    sealed (a name has at most one draft, its newest version). Edit it with the editing calls,
    then check and seal it; runs use it from then on."""
    with _write(db) as s:
        newest = store.get_graph(s, name, lock=True)
        if newest.status != GraphStatus.SEALED:
            raise GraphStatusError(f"{_label(newest)} is a {newest.status}, not sealed: edit it (a graph has at"
                                   " most one draft, its newest version)")
        spec = _spec(s, newest)
        draft = store.create_graph(s, name, newest.description, version=newest.version + 1)
        store.insert_definition(s, draft.id, spec.vertices, spec.edges)
        return _info_counts(s, draft, len(spec.vertices), len(spec.edges))


def list_versions(db: Database, name: str) -> list[VersionInfo]:
    """Every version of a graph, oldest first, with how many runs each has."""
    with db.transaction(write=False) as s:
        versions = store.graph_versions(s, name)
        if not versions:
            raise NotFoundError(f"graph '{name}' not found")
        runs = store.runs_by_version(s, [g.id for g in versions])
        return [VersionInfo(version=g.version, status=g.status, created_at=g.created_at, sealed_at=g.sealed_at,
                            runs=runs.get(g.id, 0)) for g in versions]


def rename_graph(db: Database, name: str, new_name: str) -> GraphInfo:
    """Rename a graph, every version of it (any status: the name is a label, not part of the
    definition)."""
    with _write(db) as s:
        store.get_graph(s, name, lock=True)
        check_graph_name(new_name)
        if new_name != name and store.find_graph(s, new_name) is not None:
            raise AlreadyExistsError(f"cannot rename graph '{name}': graph '{new_name}' already exists")
        store.rename_graph(s, name, new_name)
        s.expire_all()
        return _info(s, store.get_graph(s, new_name))


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed (or, with ``dry_run``, would remove)."""

    vertices: int
    edges: int
    runs: tuple[int, ...]  #: the runs' ids (their log files are the caller's to remove)
    tracks: int
    #: the versions deleted
    versions: tuple[int, ...] = ()


def delete_graph(db: Database, name: str, *, version: int | None = None, with_runs: bool = False,
                 dry_run: bool = False) -> Deleted:
    """Delete a graph, every version of it (or only ``version``) with its vertices and edges.
    A version that has runs is kept unless ``with_runs`` (its finished runs are deleted too);
    one with a running run is kept. With ``dry_run`` nothing is deleted: the same checks, and
    what would go."""
    with _write(db) as s:
        if version is None:
            store.get_graph(s, name, lock=True)
            doomed = store.graph_versions(s, name)
        else:
            doomed = [store.get_graph(s, name, version=version, lock=True)]
        what = f"graph '{name}'" if version is None else f"graph '{name}' version {version}"
        ids = [g.id for g in doomed]
        running = store.count_runs(s, ids, ["running"])
        if running:
            raise GraphStatusError(f"{what} has {running} running run(s); cancel them first")
        runs = store.count_runs(s, ids)
        if runs and not with_runs:
            raise GraphStatusError(f"{what} has {runs} run(s); delete them with it (--with-runs) or keep it")
        n_vertices = n_edges = 0
        for g in doomed:
            nv, ne = store.counts(s, g.id)
            n_vertices, n_edges = n_vertices + nv, n_edges + ne
        run_ids, tracks = store.graph_runs(s, ids)
        deleted = Deleted(n_vertices, n_edges, tuple(run_ids), tracks, tuple(g.version for g in doomed))
        if not dry_run:
            for g in doomed:
                store.delete_graph(s, g, with_runs=with_runs)
        return deleted


def list_graphs(db: Database) -> list[GraphInfo]:
    """The newest version of every graph, by name."""
    with db.transaction(write=False) as s:
        return [_info_counts(None, g, nv, ne, sv) for g, nv, ne, sv in store.list_graphs(s)]


def show_graph(db: Database, name: str, *, version: int | None = None) -> GraphDetail:
    """A version of a graph (the newest unless ``version``): its definition and status."""
    with db.transaction(write=False) as s:
        graph = store.get_graph(s, name, version=version)
        spec = _spec(s, graph)
        return GraphDetail(_info_counts(s, graph, len(spec.vertices), len(spec.edges)), spec)


def diff_graph(db: Database, name: str, old: int, new: int) -> diff.GraphDiff:
    """What version ``new`` of a graph changes in version ``old``."""
    with db.transaction(write=False) as s:
        a = _spec(s, store.get_graph(s, name, version=old))
        b = _spec(s, store.get_graph(s, name, version=new))
    return diff.diff(a, b)


# --- vertices and edges ------------------------------------------------------------------

def add_vertex(db: Database, graph: str, name: str, script: str, *, description: str = "",
               inputs: Mapping[str, Any] | None = None, timeout: float | None = None,
               retries: int = 0, priority: float | None = None, pool: str | None = None,
               retry_delay: float = 0, retry_backoff: float = 1, cwd: str | None = None,
               env: Mapping[str, str] | None = None) -> VertexSpec:
    """Add a vertex to a draft or checked graph (which becomes a draft)."""
    spec = _vertex_text(make_vertex(name, script, description=description, inputs=inputs, timeout=timeout,
                                    retries=retries, priority=priority, pool=pool, retry_delay=retry_delay,
                                    retry_backoff=retry_backoff, cwd=cwd, env=env))
    with _write(db) as s:
        g = _editable(s, graph)
        if store.find_vertex(s, g.id, name) is not None:
            raise AlreadyExistsError(f"graph '{graph}': vertex '{name}' already exists")
        row = store.vertex_row(g.id, store.next_position(s, g.id), spec)
        _fit(s, {f"graph '{graph}': vertex '{name}'": row})
        s.add(Vertex(**row))
        store.bump(s, g)
        return spec


def update_vertex(db: Database, graph: str, name: str, *, new_name: str | None = None,
                  script: str | None = None, description: str | None = None,
                  inputs: Mapping[str, Any] | None = None, timeout: float | None = _UNSET,
                  retries: int | None = None, priority: float | None = _UNSET,
                  pool: str | None = _UNSET, retry_delay: float | None = None,
                  retry_backoff: float | None = None, cwd: str | None = _UNSET,
                  env: Mapping[str, str] | None = None) -> VertexSpec:
    """Change a vertex's fields; those not given stay. ``timeout=None`` removes the limit,
    ``priority=None`` the override, ``pool=None`` the pool, ``cwd=None`` the directory (the
    worker's again); ``env={}`` removes every variable."""
    with _write(db) as s:
        g = _editable(s, graph)
        row = store.get_vertex(s, g, name)
        spec = make_vertex(
            new_name if new_name is not None else row.name,
            script if script is not None else row.script,
            description=description if description is not None else row.description,
            inputs=inputs if inputs is not None else row.inputs,
            timeout=row.timeout if timeout is _UNSET else timeout,
            retries=retries if retries is not None else row.retries,
            priority=row.priority if priority is _UNSET else priority,
            pool=row.pool if pool is _UNSET else pool,
            retry_delay=retry_delay if retry_delay is not None else row.retry_delay,
            retry_backoff=retry_backoff if retry_backoff is not None else row.retry_backoff,
            cwd=row.cwd if cwd is _UNSET else cwd,
            env=env if env is not None else (row.env or {}))
        _vertex_text(spec)
        if spec.name != name and store.find_vertex(s, g.id, spec.name) is not None:
            raise AlreadyExistsError(f"graph '{graph}': cannot rename vertex '{name}':"
                                     f" vertex '{spec.name}' already exists")
        values = store.vertex_row(g.id, row.position, spec)
        _fit(s, {f"graph '{graph}': vertex '{spec.name}'": values})
        for key, value in values.items():
            setattr(row, key, value)
        store.bump(s, g)
        return spec


def remove_vertex(db: Database, graph: str, name: str) -> None:
    """Remove a vertex and every edge that touches it."""
    with _write(db) as s:
        g = _editable(s, graph)
        store.delete_vertex(s, store.get_vertex(s, g, name))
        store.bump(s, g)


def _edge_ends(s: Session, g: Graph, tail: str, head: str) -> tuple[Vertex, Vertex]:
    missing = [n for n in (tail, head) if store.find_vertex(s, g.id, n) is None]
    if missing:
        raise NotFoundError(f"graph '{g.name}': edge {tail} -> {head}: unknown vertex "
                            + ", ".join(f"'{m}'" for m in dict.fromkeys(missing)))
    return store.get_vertex(s, g, tail), store.get_vertex(s, g, head)


def add_edge(db: Database, graph: str, tail: str, head: str) -> None:
    """Make ``head`` depend on ``tail``. Cycles are allowed in a draft and refused by check."""
    with _write(db) as s:
        g = _editable(s, graph)
        t, h = _edge_ends(s, g, tail, head)
        if t.id == h.id:
            raise GraphError(f"graph '{graph}': edge {tail} -> {head}: a vertex cannot depend on itself")
        if store.find_edge(s, g.id, t.id, h.id) is not None:
            raise AlreadyExistsError(f"graph '{graph}': edge {tail} -> {head} already exists")
        s.add(Edge(graph_id=g.id, tail_id=t.id, head_id=h.id))
        store.bump(s, g)


def remove_edge(db: Database, graph: str, tail: str, head: str) -> None:
    with _write(db) as s:
        g = _editable(s, graph)
        t, h = _edge_ends(s, g, tail, head)
        edge = store.find_edge(s, g.id, t.id, h.id)
        if edge is None:
            raise NotFoundError(f"graph '{graph}': edge {tail} -> {head} not found")
        s.delete(edge)
        store.bump(s, g)


# --- check, seal, copy ---------------------------------------------------------------------

def _check(s: Session, graph: Graph) -> CheckResult:
    spec = _spec(s, graph)
    order, cycle = dag.topological_order([v.name for v in spec.vertices], spec.edges)
    if cycle:
        raise CycleError(graph.name, cycle)
    _refuse_clashes(graph.name, {v.name: v.schema() for v in spec.vertices})
    warnings = []
    for v in spec.vertices:
        template = params.compile_script(v.name, v.script, v.schema())
        for word in template.unknown:
            warnings.append(f"vertex '{v.name}': {{{word}}} names no input of the vertex and stays as written")
    for pool, users in _missing_pools(s, spec.vertices).items():
        warnings.append(f"pool '{pool}' (vertex {users}) does not exist: the graph cannot run until it does"
                        f" (pipeline-engine pool set {pool} SIZE)")
    if not spec.vertices:
        warnings.append(f"graph '{graph.name}' has no vertices")
    return CheckResult(graph=graph.name, status=graph.status, order=order, warnings=warnings)


def _refuse_clashes(graph: str, schemas: Mapping[str, Mapping[str, params.InputSpec]]) -> None:
    """Refuse a graph where a name is secret in some vertices only (see ``spec.secret_clashes``)."""
    clashes = secret_clashes(schemas)
    if clashes:
        raise GraphError("\n".join(f"graph '{graph}': {c}" for c in clashes))


def _fit(s: Session, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse rows (by what they are, e.g. "vertex 'a'") that the server would not take in one
    statement, naming its limit, before anything is written."""
    limit = store.statement_limit(s)
    if limit is None:
        return
    problems = [f"{what} takes about {size} bytes in one statement, over the server's max_allowed_packet of"
                f" {limit} bytes: make its script, description or inputs shorter (or raise max_allowed_packet)"
                for what, size in ((w, store.row_bytes(r)) for w, r in rows.items()) if size > limit]
    if problems:
        raise GraphError("\n".join(problems))


def _missing_pools(s: Session, vertices) -> dict[str, str]:
    """Pools the vertices name that do not exist, by name, with the vertices naming each."""
    named = {v.pool for v in vertices if v.pool is not None}
    missing = sorted(named - set(store.find_pools(s, named)))
    return {p: ", ".join(f"'{v.name}'" for v in vertices if v.pool == p) for p in missing}


def check_graph(db: Database, name: str) -> CheckResult:
    """Check a graph's newest version for cycles (Kahn's algorithm). An acyclic draft becomes
    checked; a cyclic graph raises CycleError naming one cycle's vertices in order, and stays
    a draft."""
    with _write(db) as s:
        graph = store.get_graph(s, name, lock=True)
        result = _check(s, graph)
        if graph.status == GraphStatus.DRAFT:
            store.set_status(s, graph, GraphStatus.CHECKED.value)
        return CheckResult(graph=name, status=graph.status, order=result.order, warnings=result.warnings,
                           version=graph.version)


def seal_graph(db: Database, name: str) -> GraphInfo:
    """Seal a graph's newest version, which must be checked: from now on it never changes,
    and runs of the name use it."""
    with _write(db) as s:
        graph = store.get_graph(s, name, lock=True)
        if graph.status == GraphStatus.SEALED:
            raise SealedGraphError(f"{_label(graph)} is already sealed")
        if graph.status != GraphStatus.CHECKED:
            raise GraphStatusError(f"{_label(graph)} is a {graph.status}: check it before sealing"
                                   f" (graph check {name})")
        result = _check(s, graph)  # cheap, and a sealed graph must never hold a cycle
        store.set_status(s, graph, GraphStatus.SEALED.value)
        return dataclasses.replace(_info(s, graph), warnings=tuple(result.warnings))


def copy_graph(db: Database, name: str, new_name: str, *, version: int | None = None) -> GraphInfo:
    """Copy a version of a graph (the newest unless ``version``) into a new graph: version 1
    of ``new_name``, a draft."""
    with _write(db) as s:
        source = store.get_graph(s, name, version=version)
        spec = _spec(s, source)
        copy = _new_graph(s, new_name, source.description)
        store.insert_definition(s, copy.id, spec.vertices, spec.edges)
        return _info_counts(None, copy, len(spec.vertices), len(spec.edges))


# --- graph files -----------------------------------------------------------------------------

def import_graph(db: Database, source: str | GraphSpec | Mapping[str, Any], *, name: str | None = None,
                 check: bool = False, seal: bool = False, apply_pools: bool = False) -> GraphInfo:
    """Import a graph file (a path), its parsed content, or a GraphSpec as a draft: version 1
    of a new name; for a name that exists, the next version when the newest is sealed, or in
    place of the newest when it is not (a name has at most one draft). A file identical to the
    newest version, sealed, creates nothing (``GraphInfo.unchanged``). With ``check`` and
    ``seal`` do those steps too, all in one transaction. The file's ``pools`` that do not exist
    are created; an existing pool keeps its size (set since with ``pool set``, perhaps) unless
    ``apply_pools``, which sets it to the file's. ``GraphInfo.notes`` says, pool by pool, what
    was created, changed, or kept at another size than the file's."""
    if isinstance(source, GraphSpec):
        spec = source
    elif isinstance(source, Mapping):
        spec = graph_from_dict(source)
    else:
        spec = graphfile.load(source)
    target = name or spec.name
    check_graph_name(target)
    _check_description(target, spec.description)
    for vertex in spec.vertices:
        _vertex_text(vertex)
    with _write(db) as s:
        newest = store.find_graph(s, target, lock=True)
        notes = _apply_pools(s, spec, apply_pools)
        if newest is not None and newest.status == GraphStatus.SEALED and diff.same(_spec(s, newest), spec):
            return dataclasses.replace(_info(s, newest), notes=tuple(notes), unchanged=True)
        if newest is None:
            graph = store.create_graph(s, target, spec.description)
        elif newest.status == GraphStatus.SEALED:
            graph = store.create_graph(s, target, spec.description, version=newest.version + 1)
        else:
            graph = newest
            store.clear_definition(s, graph.id)
            graph.description = spec.description
            store.bump(s, graph)
        _fit(s, {f"graph '{target}': vertex '{v.name}'": store.vertex_row(graph.id, 0, v) for v in spec.vertices})
        store.insert_definition(s, graph.id, spec.vertices, spec.edges)
        warnings: list[str] = []
        if check or seal:
            warnings = _check(s, graph).warnings
            store.set_status(s, graph, GraphStatus.CHECKED.value)
        if seal:
            store.set_status(s, graph, GraphStatus.SEALED.value)
        info = _info_counts(s, graph, len(spec.vertices), len(spec.edges))
        return dataclasses.replace(info, notes=tuple(notes), warnings=tuple(warnings))


def _apply_pools(s: Session, spec: GraphSpec, apply: bool) -> list[str]:
    """Create the pools a graph file names that do not exist; with ``apply``, set the others to
    the file's sizes. Says, pool by pool, what was created, changed, or kept at another size."""
    notes = []
    existing = store.find_pools(s, [p for p, _ in spec.pools], lock=True)
    for pool_name, size in spec.pools:
        pool = existing.get(pool_name)
        if pool is None:
            store.set_pool(s, pool_name, size)
            notes.append(f"pool '{pool_name}' created with size {size}")
        elif pool.size == size:
            continue
        elif apply:
            _, before = store.set_pool(s, pool_name, size)
            notes.append(f"pool '{pool_name}' size {before} -> {size}")
        else:
            notes.append(f"pool '{pool_name}' kept at size {pool.size} (the file says {size};"
                         " use --apply-pools to change it)")
    return notes


def export_graph(db: Database, name: str, fmt: str = "yaml", *, version: int | None = None) -> str:
    """The graph file of a version of a graph (the newest unless ``version``); importing it
    gives the same definition back."""
    if fmt not in graphfile.FORMATS:
        raise GraphError(f"unknown format {fmt!r} (use one of: {', '.join(graphfile.FORMATS)})")
    return graphfile.dumps(show_graph(db, name, version=version).spec, fmt)


# --- concurrency pools ----------------------------------------------------------------------

@dataclass(frozen=True)
class PoolInfo:
    """A pool, with its tracks that run (each holds a slot) and that wait, counted in SQL."""

    name: str
    size: int
    description: str
    running: int
    pending: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "description": self.description, "running": self.running,
                "pending": self.pending, "updated_at": _iso(self.updated_at)}


def _pool_info(pool, usage: dict[str, int]) -> PoolInfo:
    return PoolInfo(pool.name, pool.size, pool.description, usage.get("running", 0), usage.get("pending", 0),
                    pool.updated_at)


def set_pool(db: Database, name: str, size: int, *, description: str | None = None) -> PoolInfo:
    """Create a pool, or change its size: at most ``size`` tracks of vertices that name it run
    at once, across every worker and run. A smaller size lets running tracks finish and starts
    no more until they fit; a larger one is used at the next claim; 0 holds its tracks pending."""
    check_pool(name, size)
    if description is not None and not isinstance(description, str):
        raise GraphError(f"pool '{name}': description must be a string")
    if description is not None:
        _text(f"pool '{name}'", "description", description)
    with _write(db) as s:
        pool, _ = store.set_pool(s, name, size, description)
        return _pool_info(pool, store.pool_usage(s).get(name, {}))


def list_pools(db: Database) -> list[PoolInfo]:
    with db.transaction(write=False) as s:
        usage = store.pool_usage(s)
        return [_pool_info(p, usage.get(p.name, {})) for p in store.list_pools(s)]


def delete_pool(db: Database, name: str) -> None:
    """Delete a pool that no vertex names (a run of a graph that names it could not start)."""
    with _write(db) as s:
        pool = store.find_pools(s, [name], lock=True).get(name)
        if pool is None:
            raise NotFoundError(f"pool '{name}' not found")
        users = store.pool_users(s, name)
        if users:
            raise PoolInUseError(f"pool '{name}' is named by vertices of graph {', '.join(repr(g) for g in users)}:"
                             " a graph that names it could not run without it (set its size to 0 to hold"
                             " its tracks instead)")
        store.delete_pool(s, pool)


# --- runs --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunStart:
    """A run just created. ``rendered`` holds each vertex's script and environment with the
    real secret values: it lives in memory only and is never stored."""

    id: int
    graph: str
    name: str | None
    #: the version of the graph it runs
    version: int
    #: vertex names of the tracks that are ready (the roots)
    pending: list[str]
    waiting: list[str]
    rendered: dict[str, params.Rendered] = field(repr=False)
    #: the run's secret values, to mask in captured output
    secrets: list[str] = field(default_factory=list, repr=False)


def _masked_params(given: Mapping[str, Any] | list[str] | None, secret_names: set[str]) -> dict[str, Any]:
    pairs = given.items() if isinstance(given, Mapping) else (str(p).partition("=")[::2] for p in (given or ()))
    return {key: params.MASK if key.rpartition(".")[2] in secret_names else value for key, value in pairs}


def _runnable(s: Session, name: str, version: int | None = None) -> Graph:
    """The version of the graph a run uses: ``version``, which must be sealed, or else the
    newest sealed one."""
    if version is not None:
        graph = store.get_graph(s, name, version=version)
        if graph.status != GraphStatus.SEALED:
            raise GraphStatusError(f"{_label(graph)} is a {graph.status}: only sealed versions run"
                                   f" (graph check {name}; graph seal {name})")
        return graph
    graph = store.newest_sealed(s, name)
    if graph is None:
        newest = store.get_graph(s, name)
        raise GraphStatusError(f"graph '{name}' has no sealed version ({_label(newest)} is a {newest.status}):"
                               f" only sealed versions run (graph check {name}; graph seal {name})")
    return graph


def missing_inputs(db: Database, graph: str, parameters: Mapping[str, Any] | list[str] | None = None, *,
                   version: int | None = None) -> list[tuple[str, params.InputSpec]]:
    """The required inputs a run of ``graph`` with ``parameters`` would lack, as the
    (vertex, spec) pairs a prompt should ask for (see ``params.missing``). Reads only; an unknown
    or unsealed graph raises as in ``start_run``."""
    with db.transaction(write=False) as s:
        g = _runnable(s, graph, version)
        schemas = {v.name: params.parse_schema(v.name, v.inputs) for v in store.vertices(s, g.id)}
    return params.missing(schemas, parameters)


def input_names(db: Database, graph: str, *, version: int | None = None) -> set[str]:
    """The names of the inputs the vertices of ``graph`` declare (reads only; an unknown or
    unsealed graph raises as in ``start_run``)."""
    with db.transaction(write=False) as s:
        g = _runnable(s, graph, version)
        return {n for v in store.vertices(s, g.id) for n in params.parse_schema(v.name, v.inputs)}


#: seconds a vertex weighs on the critical path before it has run successfully
DEFAULT_DURATION = 1.0


def priorities(vertices: list[Vertex], edges: list[tuple[str, str]], history: dict[str, list[float]]
               ) -> dict[str, float]:
    """Each vertex's priority in a new run: the heaviest path from it to a sink, each vertex
    weighed by the median of its recent successful durations, by vertex name (DEFAULT_DURATION
    without history), unless the vertex sets ``priority`` itself."""
    weight = {v.name: statistics.median(history[v.name]) if history.get(v.name) else DEFAULT_DURATION
              for v in vertices}
    path = dag.critical_path([v.name for v in vertices], edges, weight)
    return {v.name: v.priority if v.priority is not None else path[v.name] for v in vertices}


def _refuse_oversized(rendered: Mapping[str, params.Rendered]) -> None:
    """Refuse values that would keep bash from starting (see ``limits``): sizes, never values."""
    problems = [p for vertex, r in rendered.items() for p in limits.check(vertex, r.script, r.env)]
    if problems:
        raise ParameterError("\n".join(problems))


def start_run(db: Database, graph: str, parameters: Mapping[str, Any] | list[str] | None = None, *,
              name: str | None = None, workers: int | None = None, owner: str | None = None,
              detach: bool = False, version: int | None = None) -> RunStart:
    """Create a run of a sealed graph, its newest sealed version unless ``version``
    names another sealed one: every vertex's inputs are resolved and validated first
    (a missing or bad input is a ParameterError and nothing is written), then the pipeline and
    one track per vertex are created in one transaction, roots ``pending`` and the rest
    ``waiting``. Tracks store their inputs and rendered script with secrets masked.

    ``owner`` names the worker that alone will run it (``run`` in this process); with
    ``detach`` nobody owns it and any ``pipeline-engine worker`` picks it up. A graph with
    secret inputs cannot run detached: secrets are never stored, so no other process could
    have them."""
    if name is not None:
        check_name("run", name, GRAPH_NAME)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise GraphError(f"workers must be a positive integer, got {workers!r}")
    with _write(db) as s:
        g = _runnable(s, graph, version)
        rows = store.vertices(s, g.id)
        edges = store.edge_names(s, g.id)
        missing = _missing_pools(s, rows)
        if missing:
            raise NotFoundError("; ".join(f"graph '{graph}': pool '{p}' (vertex {users}) does not exist:"
                                          f" pipeline-engine pool set {p} SIZE" for p, users in missing.items()))
        schemas = {v.name: params.parse_schema(v.name, v.inputs) for v in rows}
        _refuse_clashes(graph, schemas)
        values = params.resolve(schemas, parameters)
        rendered = {v.name: params.render(params.compile_script(v.name, v.script, schemas[v.name]),
                                          values[v.name], schemas[v.name]) for v in rows}
        _refuse_oversized(rendered)
        indegree = {v.name: 0 for v in rows}
        for _, head in edges:
            indegree[head] += 1
        history = store.recent_durations(s, [v.id for v in store.graph_versions(s, graph)])
        priority = priorities(rows, edges, history)
        secret_names = {n for schema in schemas.values() for n, spec in schema.items() if spec.secret}
        if detach and secret_names:
            raise ParameterError(f"graph '{graph}' has secret inputs ({', '.join(sorted(secret_names))}), which are"
                                 " never stored: a detached run could not pass them to a worker; run it"
                                 " without --detach")
        tracks = []
        for v in rows:
            inputs = {n: (params.MASK if spec.secret and values[v.name][n] else values[v.name][n])
                      for n, spec in schemas[v.name].items()}
            tracks.append({"vertex_id": v.id, "state": "pending" if indegree[v.name] == 0 else "waiting",
                           "attempt": 0, "max_attempts": v.retries + 1, "waiting_on": indegree[v.name],
                           "priority": priority[v.name], "pool": v.pool, "inputs": inputs,
                           "script": rendered[v.name].shown,
                           "stdout": "", "stderr": ""})
        _fit(s, {f"run of graph '{graph}': the track of vertex '{v.name}'": t for v, t in zip(rows, tracks)})
        run_id = store.create_pipeline(s, g.id, name, _masked_params(parameters, secret_names), workers, tracks,
                                       owner=None if detach else owner, secret_inputs=bool(secret_names))
        return RunStart(id=run_id, graph=graph, name=name, version=g.version,
                        pending=[v.name for v in rows if indegree[v.name] == 0],
                        waiting=[v.name for v in rows if indegree[v.name] > 0], rendered=rendered,
                        secrets=sorted({str(values[v][n]) for v, schema in schemas.items()
                                        for n, spec in schema.items() if spec.secret and values[v][n]}))


@dataclass(frozen=True)
class TrackInfo:
    vertex: str
    state: str
    attempt: int
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")
    log_path: str | None = None
    #: the worker running it now
    worker: str | None = None
    #: the concurrency pool it takes a slot of while it runs
    pool: str | None = None
    #: pending, waiting for its retry: not started before this time
    retry_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"vertex": self.vertex, "state": self.state, "attempt": self.attempt, "exit_code": self.exit_code,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at), "error": self.error,
                "worker": self.worker, "pool": self.pool, "retry_at": _iso(self.retry_at)}


def _retry_at(t) -> datetime | None:
    return t.not_before if t.state == TrackState.PENDING and t.not_before is not None else None


@dataclass(frozen=True)
class RunSummary:
    id: int
    graph: str
    name: str | None
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    #: track counts by state, aggregated in SQL
    counts: dict[str, int] = field(default_factory=dict)
    #: the process that runs it alone (``run``, ``resume``); None: any worker
    owner: str | None = None
    #: the version of the graph it runs
    version: int = 1

    @property
    def for_workers(self) -> bool:
        """Running, left to the workers (``--detach``), with tracks waiting to start."""
        return self.state == "running" and self.owner is None and self.counts.get("pending", 0) > 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "graph": self.graph, "version": self.version, "name": self.name, "state": self.state,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at), "counts": self.counts}


@dataclass(frozen=True)
class RunInfo(RunSummary):
    #: one page of the run's tracks (all of them unless a limit was asked)
    tracks: list[TrackInfo] = field(default_factory=list)
    #: how many tracks the run has
    total: int = 0
    #: the parameters given to the run, secrets as ``params.MASK`` (their values are never stored)
    parameters: dict[str, Any] = field(default_factory=dict)
    #: some worker that takes runs nobody owns is alive now
    worker_alive: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "total": self.total, "tracks": [t.to_dict() for t in self.tracks],
                "parameters": self.parameters, "worker_alive": self.worker_alive}


def show_run(db: Database, run_id: int, *, limit: int | None = None, offset: int = 0, state: str | None = None,
             output: bool = True) -> RunInfo:
    """A run, its track counts by state (in SQL), and a page of its tracks in declaration order
    (``limit``/``offset``, only those in ``state`` if given), with their captured output unless
    ``output`` is false."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        graph = s.get(Graph, pipeline.graph_id)
        counts = store.counts_by_run(s, [run_id])[run_id]
        tracks = [TrackInfo(vertex=v.name, state=t.state, attempt=t.attempt, exit_code=t.exit_code,
                            started_at=t.started_at, finished_at=t.finished_at, error=t.error,
                            stdout=t.stdout if output else "", stderr=t.stderr if output else "",
                            log_path=t.log_path, worker=t.worker, pool=t.pool, retry_at=_retry_at(t))
                  for t, v in store.run_tracks_page(s, run_id, limit=limit, offset=offset, state=state, output=output)]
        return RunInfo(id=pipeline.id, graph=graph.name, version=graph.version, name=pipeline.name,
                       state=pipeline.state,
                       started_at=pipeline.started_at, finished_at=pipeline.finished_at, counts=counts,
                       tracks=tracks, total=sum(counts.values()), parameters=dict(pipeline.params or {}),
                       owner=pipeline.owner, worker_alive=_worker_alive(s))


def track_output(db: Database, run_id: int, vertex: str) -> TrackInfo:
    """One track of a run, with its captured output and log file's path."""
    with db.transaction(write=False) as s:
        _pipeline(s, run_id)
        t = store.find_track(s, run_id, vertex)
        if t is None:
            raise NotFoundError(f"run {run_id}: no vertex '{vertex}'")
        return TrackInfo(vertex=vertex, state=t.state, attempt=t.attempt, exit_code=t.exit_code,
                         started_at=t.started_at, finished_at=t.finished_at, error=t.error, stdout=t.stdout,
                         stderr=t.stderr, log_path=t.log_path, worker=t.worker, pool=t.pool, retry_at=_retry_at(t))


def list_runs(db: Database, *, graph: str | None = None, state: str | None = None,
              limit: int | None = None, offset: int = 0) -> list[RunSummary]:
    """A page of runs, newest first (only those of ``graph`` and in ``state`` when given),
    each with its track counts by state aggregated in SQL."""
    if state is not None and state not in {str(x) for x in PipelineState}:
        raise GraphError(f"unknown run state {state!r}: one of {', '.join(str(x) for x in PipelineState)}")
    with db.transaction(write=False) as s:
        graph_ids = None
        if graph is not None:
            store.get_graph(s, graph)
            graph_ids = [g.id for g in store.graph_versions(s, graph)]
        page = store.list_runs(s, graph_ids=graph_ids, state=state, limit=limit, offset=offset)
        counts = store.counts_by_run(s, [p.id for p, _, _ in page])
        return [RunSummary(id=p.id, graph=g, name=p.name, state=p.state, started_at=p.started_at,
                           finished_at=p.finished_at, counts=counts[p.id], owner=p.owner, version=v)
                for p, g, v in page]


# --- runs after their start: workers, cancel, retry, resume -------------------------------------

def _pipeline(s: Session, run_id: int, lock: bool = False):
    from pipeline_engine.models import Pipeline

    pipeline = s.get(Pipeline, run_id, with_for_update=lock)
    if pipeline is None:
        raise NotFoundError(f"run {run_id} not found")
    return pipeline


def _secret_schemas(schemas: dict[str, dict[str, params.InputSpec]]) -> dict[str, dict[str, params.InputSpec]]:
    return {v: {n: spec for n, spec in schema.items() if spec.secret} for v, schema in schemas.items()}


def _to_run(state: str, rows) -> set[str]:
    """The vertices of a run whose tracks can still run in it: of a running run (resume) those
    not finished; of a failed or cancelled one (retry) those ``store.reset_unsucceeded`` starts
    again."""
    if state == PipelineState.RUNNING:
        return {v.name for t, v in rows if t.state not in TRACK_FINISHED}
    return {v.name for t, v in rows if t.state != TrackState.SUCCEEDED}


def _needed_secrets(state: str, rows) -> dict[str, dict[str, params.InputSpec]]:
    """The secret inputs of a run, required only for the vertices that can still run: a secret
    of another vertex may be given (it is checked) but is not asked for."""
    needed = _to_run(state, rows)
    schemas = _secret_schemas({v.name: params.parse_schema(v.name, v.inputs) for _, v in rows})
    return {v: schema if v in needed else {n: dataclasses.replace(spec, required=False) for n, spec in schema.items()}
            for v, schema in schemas.items()}


def secret_names(db: Database, run_id: int) -> set[str]:
    """The names of the secret inputs the vertices of a run declare (reads only)."""
    with db.transaction(write=False) as s:
        _pipeline(s, run_id)
        rows = store.run_tracks(s, run_id)
    return {n for schema in _secret_schemas({v.name: params.parse_schema(v.name, v.inputs) for _, v in rows}).values()
            for n in schema}


def missing_secrets(db: Database, run_id: int, parameters: Mapping[str, Any] | list[str] | None = None
                    ) -> list[tuple[str, params.InputSpec]]:
    """The secret inputs that ``parameters`` lacks for the vertices of a run that can still run
    (see ``load_run``): a process that takes a run over (resume, retry) must be given them
    again, since they are never stored."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        rows = store.run_tracks(s, run_id)
        state = pipeline.state
    return params.missing(_needed_secrets(state, rows), parameters)


def load_run(db: Database, run_id: int, parameters: Mapping[str, Any] | list[str] | None = None) -> RunStart:
    """A run's scripts rendered again from the database: the inputs stored with each track, and
    the secret inputs, which are never stored, from ``parameters`` (only secrets are accepted
    there). Used by workers, ``resume`` and ``retry``. Only the secrets of the tracks that can
    still run are required (a running run's unfinished ones; a finished run's unsucceeded ones,
    which retry starts again); a vertex with secrets that cannot run is not rendered."""
    with db.transaction(write=False) as s:
        pipeline = _pipeline(s, run_id)
        graph = s.get(Graph, pipeline.graph_id)
        rows = store.run_tracks(s, run_id)
        state = pipeline.state
    schemas = {v.name: params.parse_schema(v.name, v.inputs) for _, v in rows}
    secret_values = params.resolve(_needed_secrets(state, rows), parameters)
    to_run = _to_run(state, rows)
    rendered = {}
    for t, v in rows:
        if v.name not in to_run and any(spec.secret for spec in schemas[v.name].values()):
            continue  # never runs again, and its secrets need not have been given
        values = {**(t.inputs or {}), **secret_values[v.name]}
        rendered[v.name] = params.render(params.compile_script(v.name, v.script, schemas[v.name]), values,
                                         schemas[v.name])
    _refuse_oversized(rendered)
    secrets = sorted({str(x) for per in secret_values.values() for x in per.values() if x})
    return RunStart(id=run_id, graph=graph.name, name=pipeline.name, version=graph.version,
                    pending=[v.name for t, v in rows if t.state == "pending"],
                    waiting=[v.name for t, v in rows if t.state == "waiting"], rendered=rendered, secrets=secrets)


def cancel_run(db: Database, run_id: int, *, wait: float = 0.0, poll: float = 0.1) -> dict[str, int]:
    """Cancel a running run: waiting and pending tracks become ``cancelled`` at once, running
    ones too, and the workers running them terminate their process groups at their next
    heartbeat. With ``wait`` seconds, return once every worker has let go of the run's tracks
    (or its lease ran out: a dead worker runs nothing). Returns the track counts by state."""
    with _write(db) as s:
        pipeline = _pipeline(s, run_id)
        if pipeline.state != PipelineState.RUNNING:
            raise RunStateError(f"run {run_id} {run_is(pipeline.state)}: only a running run can be cancelled")
        store.cancel_pipeline(s, run_id)
    deadline = time.monotonic() + wait
    while True:
        with db.transaction(write=False) as s:
            holders = store.track_holders(s, run_id)
        with db.transaction(write=False) as s:
            live = {w.name for w, _ in recovery.live_workers(s)}
        if not holders & live or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if holders - live:  # dead workers will never acknowledge: let go for them
        with _write(db) as s:
            store.forget_holders(s, run_id, holders - live)
    with db.transaction(write=False) as s:
        return store.counts_by_run(s, [run_id])[run_id]


def retry_run(db: Database, run_id: int, *, owner: str | None = None, detach: bool = False) -> list[str]:
    """Start the failed, upstream_failed and cancelled tracks of a finished run again (each gets
    a new attempt and its retries anew); succeeded tracks are kept. Returns the vertex names
    that will run again."""
    with _write(db) as s:
        pipeline = _pipeline(s, run_id, lock=True)  # before its tracks, as prune locks them
        if pipeline.state not in (PipelineState.FAILED, PipelineState.CANCELLED):
            raise RunStateError(f"run {run_id} {run_is(pipeline.state)}: only a failed or cancelled run can be"
                                   " retried")
        if store.track_holders(s, run_id):
            raise RunStateError(f"run {run_id}: a worker still holds some of its tracks; wait for the cancel"
                                   " to finish")
        if detach and pipeline.secret_inputs:
            raise ParameterError(f"run {run_id} has secret inputs, which are never stored: retry it without"
                                 " --detach")
        again = store.reset_unsucceeded(s, run_id)
        pipeline.state, pipeline.finished_at = PipelineState.RUNNING.value, None
        pipeline.owner = None if detach else owner
        return again


def resume_run(db: Database, run_id: int, owner: str) -> None:
    """Let ``owner`` adopt a running run whose engine died: its running tracks held by dead
    workers are taken back now (pending while retries remain, else failed), and the run is
    ``owner``'s. Refused while the run's owner is alive."""
    with _write(db) as s:
        pipeline = _pipeline(s, run_id)
        if pipeline.state != PipelineState.RUNNING:
            raise RunStateError(f"run {run_id} {run_is(pipeline.state)}: only a running run can be resumed"
                                   f" (pipeline-engine retry {run_id} starts a finished one again)")
        live = {w.name for w, _ in recovery.live_workers(s)}
        if pipeline.owner is not None and pipeline.owner in live:
            raise RunStateError(f"run {run_id} is being run by {pipeline.owner}, which is alive")
        pipeline.owner = owner
        s.flush()
        recovery.take_back_from_dead(s.connection(), db.key, run_id, live)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    concurrency: int
    lease: float
    started_at: datetime
    heartbeat_at: datetime
    #: tracks it runs now
    tracks: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "pid": self.pid, "concurrency": self.concurrency,
                "lease": self.lease, "started_at": _iso(self.started_at), "heartbeat_at": _iso(self.heartbeat_at),
                "tracks": self.tracks}


def _worker_alive(s: Session) -> bool:
    owners = store.running_owners(s)
    return any(w.name not in owners for w, _ in recovery.live_workers(s))


def worker_alive(db: Database) -> bool:
    """Whether a worker that takes runs nobody owns (``run --detach``) is alive now: not
    stopped, its heartbeat within its lease, and not a ``run`` or ``resume`` process (those run
    their own run only)."""
    with db.transaction(write=False) as s:
        return _worker_alive(s)


def list_workers(db: Database) -> list[WorkerInfo]:
    """Live workers (not stopped, heartbeat within their lease), by name."""
    with db.transaction(write=False) as s:
        return [WorkerInfo(w.name, w.host, w.pid, w.concurrency, w.lease, w.started_at, w.heartbeat_at, n)
                for w, n in recovery.live_workers(s)]


def recover(db: Database) -> int:
    """Take back now the running tracks of workers whose lease ran out; returns how many."""
    with _write(db) as s:
        return recovery.recover_expired(s.connection(), db.key)


def prune_runs(db: Database, older_than_days: float, *, batch: int = 500,
               on_batch: Callable[[list[int]], None] | None = None, dry_run: bool = False) -> tuple[int, int]:
    """Delete the runs that finished more than ``older_than_days`` ago, with their tracks, in
    transactions of ``batch`` runs (short: running work is never waited on). ``on_batch``
    gets each batch's run ids once deleted. Returns (runs, tracks) deleted; with ``dry_run``,
    what would be deleted now, and nothing is."""
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, (int, float)) or older_than_days < 0:
        raise GraphError(f"--older-than must be a number of days >= 0, got {older_than_days!r}")
    before = store.now() - timedelta(days=older_than_days)
    if dry_run:
        with db.transaction(write=False) as s:
            return store.count_old_finished_runs(s.connection(), before)
    runs = tracks = 0
    while True:
        with _write(db) as s:
            conn = s.connection()
            candidates = store.old_finished_runs(conn, before, batch)
            ids, n = store.delete_runs(conn, candidates, before)  # a run retried meanwhile is kept
        runs, tracks = runs + len(ids), tracks + n
        if ids and on_batch is not None:
            on_batch(ids)
        if len(candidates) < batch:
            return runs, tracks
