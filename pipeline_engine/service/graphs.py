"""Graphs and their versions: define, edit the newest draft, check, seal, copy, import and
export graph files, compare versions."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from pipeline_engine import dag, diff, graphfile, inputtypes, rendering, store
from pipeline_engine.db import Database
from pipeline_engine.errors import (
    AlreadyExistsError,
    CycleError,
    GraphError,
    GraphStatusError,
    NotFoundError,
    SealedGraphError,
)
from pipeline_engine.models import Edge, Graph, Vertex
from pipeline_engine.service._base import _after_bulk, _audit, _fit, _text, _write
from pipeline_engine.spec import GraphSpec, VertexSpec, check_graph_name, graph_from_dict, make_vertex, secret_clashes
from pipeline_engine.states import GraphStatus
from pipeline_engine.views import CheckResult, Deleted, GraphDetail, GraphInfo, VersionInfo

_UNSET: Any = object()


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


# --- helpers --------------------------------------------------------------------------

def _editable(s: Session, name: str) -> Graph:
    """The newest version of the graph, locked for writing, which must not be sealed."""
    graph = store.get_graph(s, name, lock=True)
    if graph.status == GraphStatus.SEALED:
        raise SealedGraphError(f"graph '{name}' version {graph.version} is sealed and cannot change: start version"
                               f" {graph.version + 1} with service.new_version(db, {name!r}), or import a changed"
                               f" graph file (graph import FILE)")
    return graph


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
        info = _info_counts(None, _new_graph(s, name, description or ""), 0, 0)
        _audit(s, "graph.create", name)
        return info


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
        _audit(s, "graph.new_version", name, f"version {draft.version}")
        info = _info_counts(s, draft, len(spec.vertices), len(spec.edges))
    _after_bulk(db, len(spec.vertices) + len(spec.edges), Vertex, Edge)
    return info


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
        _audit(s, "graph.rename", name, f"to '{new_name}'")
        s.expire_all()
        return _info(s, store.get_graph(s, new_name))


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
            _audit(s, "graph.delete", name, f"versions {', '.join(str(g.version) for g in doomed)}; {len(run_ids)} run(s)")
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
        store.add_vertex(s, row)
        store.bump(s, g)
        _audit(s, "vertex.add", graph, f"vertex '{name}'")
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
        store.update_vertex(s, row, values)
        store.bump(s, g)
        _audit(s, "vertex.update", graph, f"vertex '{name}'")
        return spec


def remove_vertex(db: Database, graph: str, name: str) -> None:
    """Remove a vertex and every edge that touches it."""
    with _write(db) as s:
        g = _editable(s, graph)
        store.delete_vertex(s, store.get_vertex(s, g, name))
        store.bump(s, g)
        _audit(s, "vertex.remove", graph, f"vertex '{name}'")


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
        store.add_edge(s, g.id, t.id, h.id)
        store.bump(s, g)
        _audit(s, "edge.add", graph, f"{tail} -> {head}")


def remove_edge(db: Database, graph: str, tail: str, head: str) -> None:
    with _write(db) as s:
        g = _editable(s, graph)
        t, h = _edge_ends(s, g, tail, head)
        edge = store.find_edge(s, g.id, t.id, h.id)
        if edge is None:
            raise NotFoundError(f"graph '{graph}': edge {tail} -> {head} not found")
        store.delete_edge(s, edge)
        store.bump(s, g)
        _audit(s, "edge.remove", graph, f"{tail} -> {head}")


# --- check, seal, copy ---------------------------------------------------------------------

def _check(s: Session, graph: Graph) -> CheckResult:
    spec = _spec(s, graph)
    order, cycle = dag.topological_order([v.name for v in spec.vertices], spec.edges)
    if cycle:
        raise CycleError(graph.name, cycle)
    _refuse_clashes(graph.name, {v.name: v.schema() for v in spec.vertices})
    warnings = []
    for v in spec.vertices:
        template = rendering.compile_script(v.name, v.script, v.schema())
        for word in template.unknown:
            warnings.append(f"vertex '{v.name}': {{{word}}} names no input of the vertex and stays as written")
    for pool, users in _missing_pools(s, spec.vertices).items():
        warnings.append(f"pool '{pool}' (vertex {users}) does not exist: the graph cannot run until it does"
                        f" (pipeline-engine pool set {pool} SIZE)")
    if not spec.vertices:
        warnings.append(f"graph '{graph.name}' has no vertices")
    return CheckResult(graph=graph.name, status=graph.status, order=order, warnings=warnings)


def _refuse_clashes(graph: str, schemas: Mapping[str, Mapping[str, inputtypes.InputSpec]]) -> None:
    """Refuse a graph where a name is secret in some vertices only (see ``spec.secret_clashes``)."""
    clashes = secret_clashes(schemas)
    if clashes:
        raise GraphError("\n".join(f"graph '{graph}': {c}" for c in clashes))


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
        if graph.status == GraphStatus.DRAFT:  # a check that changes nothing is not a change to record
            store.set_status(s, graph, GraphStatus.CHECKED.value)
            _audit(s, "graph.check", name, f"version {graph.version}")
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
        _audit(s, "graph.seal", name, f"version {graph.version}")
        return dataclasses.replace(_info(s, graph), warnings=tuple(result.warnings))


def copy_graph(db: Database, name: str, new_name: str, *, version: int | None = None) -> GraphInfo:
    """Copy a version of a graph (the newest unless ``version``) into a new graph: version 1
    of ``new_name``, a draft."""
    with _write(db) as s:
        source = store.get_graph(s, name, version=version)
        spec = _spec(s, source)
        copy = _new_graph(s, new_name, source.description)
        store.insert_definition(s, copy.id, spec.vertices, spec.edges)
        _audit(s, "graph.copy", name, f"version {source.version} to '{new_name}'")
    _after_bulk(db, len(spec.vertices) + len(spec.edges), Vertex, Edge)
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
        info = _import(s, target, spec, check=check, seal=seal, apply_pools=apply_pools)
    if not info.unchanged:
        _after_bulk(db, len(spec.vertices) + len(spec.edges), Vertex, Edge)
    return info


def _import(s: Session, target: str, spec: GraphSpec, *, check: bool, seal: bool, apply_pools: bool) -> GraphInfo:
    """``import_graph`` inside its transaction."""
    newest = store.find_graph(s, target, lock=True)
    notes = _apply_pools(s, spec, apply_pools)
    if newest is not None and newest.status == GraphStatus.SEALED and diff.same(_spec(s, newest), spec):
        notes += _apply_schedules(s, spec, target)
        if notes:
            _audit(s, "graph.import", target, "unchanged; " + "; ".join(notes))
        return dataclasses.replace(_info(s, newest), notes=tuple(notes), unchanged=True)
    if newest is None:
        graph = store.create_graph(s, target, spec.description)
    elif newest.status == GraphStatus.SEALED:
        graph = store.create_graph(s, target, spec.description, version=newest.version + 1)
    else:
        graph = newest
        store.clear_definition(s, graph.id)
        store.set_description(s, graph, spec.description)
        store.bump(s, graph)
    _fit(s, {f"graph '{target}': vertex '{v.name}'": store.vertex_row(graph.id, 0, v) for v in spec.vertices})
    store.insert_definition(s, graph.id, spec.vertices, spec.edges)
    warnings: list[str] = []
    if check or seal:
        warnings = _check(s, graph).warnings
        store.set_status(s, graph, GraphStatus.CHECKED.value)
    if seal:
        store.set_status(s, graph, GraphStatus.SEALED.value)
    notes += _apply_schedules(s, spec, target)
    info = _info_counts(s, graph, len(spec.vertices), len(spec.edges))
    _audit(s, "graph.import", target, "; ".join([f"version {graph.version}, {graph.status}", *notes]))
    return dataclasses.replace(info, notes=tuple(notes), warnings=tuple(warnings))


def _apply_schedules(s: Session, spec: GraphSpec, target: str) -> list[str]:
    """Create or update the file's schedules (for the graph it is imported as), line by line
    as for pools. A schedule the file no longer names is left as it is."""
    from pipeline_engine.service.schedules import put_schedule  # it starts runs of graphs

    notes = [put_schedule(s, dataclasses.replace(x, graph=target)) for x in spec.schedules]
    return [n for n in notes if not n.endswith(" unchanged")]


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
    from pipeline_engine.service.schedules import schedule_specs

    spec = show_graph(db, name, version=version).spec
    return graphfile.dumps(dataclasses.replace(spec, schedules=tuple(schedule_specs(db, name))), fmt)
