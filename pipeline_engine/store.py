"""Every query and write: graphs and their versions, runs and tracks, workers, pools, API tokens, the
installation. Functions take the caller's session or connection; the caller owns the
transaction (``Database.transaction``)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import simplejson
from sqlalchemy import (BigInteger, Text, and_, bindparam, case, delete, false, func, insert, literal, null, or_, select, text,
                        type_coerce, union_all, update)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased, defer

from pipeline_engine import dag, settings
from pipeline_engine.errors import NotFoundError
from pipeline_engine.models import (Audit, Backfill, Edge, Graph, Idempotency, Installation, Pipeline, Pool, Schedule,
                                    ScheduleDecision, Token, Track, TrackAttempt, Vertex, WebSession, Worker)
from pipeline_engine.spec import VertexSpec
from pipeline_engine.states import (ADOPT, CANCEL_QUEUED, CANCEL_RUN, CANCEL_RUNNING, CLAIM, FINISH, HAND_BACK, HEARTBEAT,
                                    RECORD, RELEASE, RESET, RESTART, START_QUEUED, TAKE_BACK, UPSTREAM_FAILED, GraphStatus,
                                    Move)
from pipeline_engine.states import RUNNING_ATTEMPT
from pipeline_engine.states import AttemptOutcome as A
from pipeline_engine.states import PipelineState as P
from pipeline_engine.states import TrackState as T


def now() -> datetime:
    return datetime.now(timezone.utc)


def _from(column: Any, move: Move) -> Any:
    """The compare-and-set guard of ``move``'s UPDATE, from the transition table: ``column =
    'word'`` for one source state, ``column IN (...)`` (sorted: one statement text) for more."""
    words = sorted(state.value for state in move.sources)
    return column == words[0] if len(words) == 1 else column.in_(words)


# --- installation --------------------------------------------------------------

def installation_id(conn: Connection) -> str | None:
    """The database's installation id, None before its first use made one."""
    return conn.execute(select(Installation.id).where(Installation.slot == 1)).scalar_one_or_none()


def create_installation(conn: Connection, installation: str) -> None:
    """Record ``installation`` as the database's id. Raises IntegrityError when it has one
    already: the table's primary key admits one row, so of concurrent creators one wins."""
    conn.execute(insert(Installation).values(slot=1, id=installation, created_at=now()))


def ping(conn: Connection) -> None:
    """One round trip to the server."""
    conn.execute(select(1)).scalar_one()
    conn.rollback()


# --- graphs --------------------------------------------------------------------

def find_graph(s: Session, name: str, *, version: int | None = None, lock: bool = False) -> Graph | None:
    """A version of the graph ``name``: ``version``, or the newest."""
    q = select(Graph).where(Graph.name == name)
    q = q.where(Graph.version == version) if version is not None else q.order_by(Graph.version.desc()).limit(1)
    if lock:
        # Serialises writers of one graph on MySQL/PostgreSQL (SQLite already holds the
        # database's write lock), so a check cannot race an edit into a sealed cycle.
        q = q.with_for_update()
    return s.scalars(q).one_or_none()


def get_graph(s: Session, name: str, *, version: int | None = None, lock: bool = False) -> Graph:
    graph = find_graph(s, name, version=version, lock=lock)
    if graph is None:
        if version is None or find_graph(s, name) is None:
            raise NotFoundError(f"graph '{name}' not found")
        numbers = graph_versions(s, name)
        raise NotFoundError(f"graph '{name}' has no version {version} (it has {_spans([g.version for g in numbers])})")
    return graph


def _spans(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> "versions 1-3, 5"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs]
    return ("version " if len(numbers) == 1 else "versions ") + ", ".join(parts)


def newest_sealed(s: Session, name: str) -> Graph | None:
    """The newest sealed version of ``name``: the one a run of the name runs."""
    return s.scalars(select(Graph).where(Graph.name == name, Graph.status == GraphStatus.SEALED)
                     .order_by(Graph.version.desc()).limit(1)).one_or_none()


def graph_versions(s: Session, name: str) -> list[Graph]:
    """Every version of ``name``, oldest first."""
    return list(s.scalars(select(Graph).where(Graph.name == name).order_by(Graph.version)))


def create_graph(s: Session, name: str, description: str = "", *, version: int = 1) -> Graph:
    stamp = now()
    graph = Graph(name=name, version=version, description=description, status=GraphStatus.DRAFT, created_at=stamp,
                  updated_at=stamp)
    s.add(graph)
    s.flush()
    return graph


def rename_graph(s: Session, name: str, new_name: str) -> None:
    """Rename every version of ``name``."""
    s.execute(update(Graph).where(Graph.name == name).values(name=new_name, updated_at=now()))


def list_graphs(s: Session) -> list[tuple[Graph, int, int, int | None]]:
    """The newest version of every graph with its vertex and edge counts and the number of
    its newest sealed version, by name."""
    newest = select(Graph.name, func.max(Graph.version).label("version")).group_by(Graph.name).subquery()
    sealed = (select(Graph.name, func.max(Graph.version).label("version")).where(Graph.status == GraphStatus.SEALED)
              .group_by(Graph.name).subquery())
    vcount = select(Vertex.graph_id, func.count().label("n")).group_by(Vertex.graph_id).subquery()
    ecount = select(Edge.graph_id, func.count().label("n")).group_by(Edge.graph_id).subquery()
    q = (select(Graph, func.coalesce(vcount.c.n, 0), func.coalesce(ecount.c.n, 0), sealed.c.version)
         .join(newest, and_(newest.c.name == Graph.name, newest.c.version == Graph.version))
         .outerjoin(sealed, sealed.c.name == Graph.name)
         .outerjoin(vcount, vcount.c.graph_id == Graph.id)
         .outerjoin(ecount, ecount.c.graph_id == Graph.id)
         .order_by(Graph.name))
    return [(g, int(v), int(e), sv) for g, v, e, sv in s.execute(q)]


def counts(s: Session, graph_id: int) -> tuple[int, int]:
    """(vertices, edges) of a graph, counted in SQL."""
    n_vertices = s.scalar(select(func.count()).select_from(Vertex).where(Vertex.graph_id == graph_id)) or 0
    n_edges = s.scalar(select(func.count()).select_from(Edge).where(Edge.graph_id == graph_id)) or 0
    return int(n_vertices), int(n_edges)


def runs_by_version(s: Session, graph_ids: Sequence[int]) -> dict[int, int]:
    """Graph (version) id -> how many runs it has."""
    q = (select(Pipeline.graph_id, func.count()).where(Pipeline.graph_id.in_(list(graph_ids)))
         .group_by(Pipeline.graph_id))
    return {gid: int(n) for gid, n in s.execute(q)}


def count_runs(s: Session, graph_ids: Sequence[int], states: Iterable[str] | None = None) -> int:
    q = select(func.count()).select_from(Pipeline).where(Pipeline.graph_id.in_(list(graph_ids)))
    if states is not None:
        q = q.where(Pipeline.state.in_(list(states)))
    return s.scalar(q) or 0


def graph_runs(s: Session, graph_ids: Sequence[int]) -> tuple[list[int], int]:
    """The ids of the runs of these graph versions, and how many tracks they have."""
    runs = select(Pipeline.id).where(Pipeline.graph_id.in_(list(graph_ids)))
    ids = list(s.scalars(runs.order_by(Pipeline.id)))
    tracks = s.scalar(select(func.count()).select_from(_track).where(_track.c.pipeline_id.in_(runs))) or 0
    return ids, tracks


def delete_graph(s: Session, graph: Graph, *, with_runs: bool = False) -> None:
    """Delete one version of a graph."""
    if with_runs:
        s.execute(delete(Pipeline).where(Pipeline.graph_id == graph.id))
    clear_definition(s, graph.id)
    s.execute(delete(Graph).where(Graph.id == graph.id))


def clear_definition(s: Session, graph_id: int) -> None:
    """Delete a graph version's vertices and edges."""
    # Edges and vertices go by ON DELETE CASCADE with the graph; delete them explicitly all the
    # same, so the outcome does not depend on a backend's cascade settings.
    s.execute(delete(Edge).where(Edge.graph_id == graph_id))
    s.execute(delete(Vertex).where(Vertex.graph_id == graph_id))


# --- vertices and edges -----------------------------------------------------------

def vertices(s: Session, graph_id: int) -> list[Vertex]:
    return list(s.scalars(select(Vertex).where(Vertex.graph_id == graph_id).order_by(Vertex.position)))


def find_vertex(s: Session, graph_id: int, name: str) -> Vertex | None:
    return s.scalars(select(Vertex).where(Vertex.graph_id == graph_id, Vertex.name == name)).one_or_none()


def get_vertex(s: Session, graph: Graph, name: str) -> Vertex:
    vertex = find_vertex(s, graph.id, name)
    if vertex is None:
        raise NotFoundError(f"graph '{graph.name}': vertex '{name}' not found")
    return vertex


def delete_vertex(s: Session, vertex: Vertex) -> None:
    """Delete a vertex and every edge that touches it."""
    s.execute(delete(Edge).where(Edge.graph_id == vertex.graph_id,
                                 or_(Edge.tail_id == vertex.id, Edge.head_id == vertex.id)))
    s.delete(vertex)
    s.flush()


def add_vertex(s: Session, row: Mapping[str, Any]) -> None:
    """Insert a vertex (``vertex_row``'s form)."""
    s.add(Vertex(**row))
    s.flush()


def update_vertex(s: Session, vertex: Vertex, values: Mapping[str, Any]) -> None:
    """Set a vertex's columns (``vertex_row``'s form)."""
    for key, value in values.items():
        setattr(vertex, key, value)
    s.flush()


def add_edge(s: Session, graph_id: int, tail_id: int, head_id: int) -> None:
    s.add(Edge(graph_id=graph_id, tail_id=tail_id, head_id=head_id))
    s.flush()


def delete_edge(s: Session, edge: Edge) -> None:
    s.delete(edge)
    s.flush()


def set_description(s: Session, graph: Graph, description: str) -> None:
    graph.description = description
    s.flush()


def edge_names(s: Session, graph_id: int) -> list[tuple[str, str]]:
    """The graph's edges as (tail name, head name), in the order they were added."""
    tail, head = aliased(Vertex), aliased(Vertex)
    q = (select(tail.name, head.name).select_from(Edge)
         .join(tail, tail.id == Edge.tail_id).join(head, head.id == Edge.head_id)
         .where(Edge.graph_id == graph_id).order_by(Edge.id))
    return [(t, h) for t, h in s.execute(q)]


def find_edge(s: Session, graph_id: int, tail_id: int, head_id: int) -> Edge | None:
    return s.scalars(select(Edge).where(Edge.graph_id == graph_id, Edge.tail_id == tail_id,
                                        Edge.head_id == head_id)).one_or_none()


def next_position(s: Session, graph_id: int) -> int:
    return (s.scalar(select(func.max(Vertex.position)).where(Vertex.graph_id == graph_id)) or 0) + 1


def vertex_row(graph_id: int, position: int, v: VertexSpec) -> dict:
    return {"graph_id": graph_id, "position": position, "name": v.name, "script": v.script,
            "description": v.description, "inputs": v.inputs, "timeout": v.timeout, "retries": v.retries,
            "priority": v.priority, "pool": v.pool, "retry_delay": v.retry_delay, "retry_backoff": v.retry_backoff,
            "cwd": v.cwd, "env": v.env or None}


def insert_definition(s: Session, graph_id: int, specs: Sequence[VertexSpec],
                      edges: Sequence[tuple[str, str]]) -> None:
    """Bulk-insert vertices and edges: a few statements, however big the graph."""
    if specs:
        s.execute(insert(Vertex), [vertex_row(graph_id, i, v) for i, v in enumerate(specs, 1)])
    if edges:
        ids = dict(s.execute(select(Vertex.name, Vertex.id).where(Vertex.graph_id == graph_id)).all())
        s.execute(insert(Edge), [{"graph_id": graph_id, "tail_id": ids[t], "head_id": ids[h]} for t, h in edges])


#: what a statement adds around one row's values: the statement, column names, the protocol
_STATEMENT_OVERHEAD = 4096
#: characters the driver sends escaped, two bytes each
_ESCAPED = "\\'\"\0\n\r\x1a"


def statement_limit(s: Session) -> int | None:
    """The largest statement the server takes, in bytes: MySQL/MariaDB's ``max_allowed_packet``
    (a bigger one fails with "server has gone away"). None on SQLite and PostgreSQL, whose
    limits (1 GB for one value) are far beyond what a graph file or a run holds. Bulk inserts
    need no more than their biggest row: PyMySQL sends them in statements of about 1 MB."""
    if s.get_bind().dialect.name not in ("mysql", "mariadb"):
        return None
    return int(s.execute(text("SELECT @@max_allowed_packet")).scalar_one())


def refresh_statistics(s: Session, tables: Sequence[type]) -> None:
    """Have PostgreSQL's planner learn what a bulk insert just did to ``tables`` (model
    classes). Until autovacuum analyzes them (a minute or more later) its statistics say a new
    run's id or a new graph's id has a handful of rows: it sorts a 100,000-track run's counts on
    disk and hashes every vertex of every graph to read a 100-vertex graph's edges (50 ms
    instead of 2). Waits at most a moment for the table's maintenance lock (autovacuum may hold
    it, and analyzes then anyway): past that it is a DatabaseError. MariaDB recomputes InnoDB's
    statistics itself once a tenth of a table changes, and SQLite uses none it has not been
    told to keep: there this does nothing."""
    if s.get_bind().dialect.name != "postgresql":
        return
    s.execute(text("SET LOCAL lock_timeout = '200ms'"))
    for table in tables:  # model classes: the names are ours, never a caller's text
        s.execute(text(f"ANALYZE {table.__tablename__}"))


def row_bytes(row: Mapping[str, Any]) -> int:
    """At most how many bytes ``row`` (column -> value, as for ``insert``) takes in a statement:
    its text in UTF-8, escaped characters twice, JSON columns as they are stored."""
    size = _STATEMENT_OVERHEAD
    for value in row.values():
        if isinstance(value, (dict, list)):
            value = simplejson.dumps(value)
        if isinstance(value, str):
            size += len(value.encode("utf-8", "surrogateescape")) + sum(map(value.count, _ESCAPED))
        else:
            size += 32
    return size


def set_status(s: Session, graph: Graph, status: str) -> None:
    graph.status = status
    graph.updated_at = now()
    if status == GraphStatus.SEALED:
        graph.sealed_at = graph.updated_at
    s.flush()


def bump(s: Session, graph: Graph) -> None:
    """Record a change to the definition: the graph is a draft again."""
    s.execute(update(Graph).where(Graph.id == graph.id).values(status=GraphStatus.DRAFT, updated_at=now()))
    s.expire(graph)


# --- runs ------------------------------------------------------------------------------------

def create_pipeline(s: Session, graph_id: int, name: str | None, params: dict, tracks: Sequence[dict], *,
                    owner: str | None = None, secret_inputs: bool = False, started_by: str | None = None,
                    trigger: str | None = None, schedule: str | None = None, fire_at: datetime | None = None,
                    queued: bool = False, backfill_id: int | None = None, run_key: str | None = None) -> Pipeline:
    """Insert a running pipeline (``queued``: one waiting its turn) and its tracks (bulk);
    returns the pipeline. A ``run_key`` another run has fails on its unique index."""
    stamp = now()
    pipeline = Pipeline(graph_id=graph_id, name=name, state=P.QUEUED if queued else P.RUNNING, params=params,
                        created_at=stamp, started_at=None if queued else stamp, owner=owner,
                        secret_inputs=secret_inputs, started_by=started_by, trigger=trigger, schedule=schedule,
                        fire_at=fire_at, backfill_id=backfill_id, run_key=run_key)
    s.add(pipeline)
    s.flush()
    if tracks:
        s.execute(insert(Track), [{**t, "pipeline_id": pipeline.id, "changed_at": stamp} for t in tracks])
    return pipeline


def list_runs(s: Session, *, graph_ids: Sequence[int] | None = None, state: str | None = None,
              trigger: str | None = None, limit: int | None = None, offset: int = 0
              ) -> list[tuple[Pipeline, str, int]]:
    """Pipelines with their graph's name and version, newest first. The page is read from the
    pipelines alone (newest first by primary key), the names after: a join lets MariaDB's
    planner start from the graph and sort every run of it."""
    q = select(Pipeline).order_by(Pipeline.id.desc())
    if graph_ids is not None:
        q = q.where(Pipeline.graph_id.in_(list(graph_ids)))
    if state is not None:
        q = q.where(Pipeline.state == state)
    if trigger is not None:
        q = q.where(Pipeline.trigger == trigger)
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    page = list(s.scalars(q))
    names = {gid: (name, version) for gid, name, version in s.execute(
        select(Graph.id, Graph.name, Graph.version).where(Graph.id.in_({p.graph_id for p in page})))} if page else {}
    return [(p, *names[p.graph_id]) for p in page]


def recent_durations(s: Session, graph_ids: Sequence[int], runs: int = 10,
                     names: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Vertex name -> durations (seconds) of its successful attempts in the last ``runs`` runs
    of these versions of a graph: the history that weighs the critical path, carried across
    versions by vertex name. Bounded by ``runs`` x the graph's size, however long the history."""
    recent = list(s.scalars(select(Pipeline.id).where(Pipeline.graph_id.in_(list(graph_ids)))
                            .order_by(Pipeline.id.desc()).limit(runs)))
    out: dict[str, list[float]] = {}
    if recent:
        q = (select(Vertex.name, Track.duration).join(Vertex, Vertex.id == Track.vertex_id)
             .where(Track.pipeline_id.in_(recent), Track.state == T.SUCCEEDED, Track.duration.is_not(None)))
        if names is not None:  # only these vertices (a page of a big graph)
            q = q.where(Vertex.name.in_(list(names)))
        for name, duration in s.execute(q):
            out.setdefault(name, []).append(duration)
    return out


def run_tracks_page(s: Session, pipeline_id: int, *, limit: int | None = None, offset: int = 0,
                    state: str | None = None, output: bool = True) -> list[tuple[Track, Vertex]]:
    """A page of a run's tracks with their vertices, in declaration order; without ``output``
    the captured output, scripts and inputs are not read (a big run's page stays small)."""
    # declaration order is vertex id order: a graph's vertices are inserted in order and never
    # move (an edit keeps its row, an added one comes last). Ordering by the track's vertex_id
    # walks the (pipeline_id, vertex_id) index and stops at the page; ordering by position
    # would sort every track of the run first (0.25 s for a page of a 100,000-track run)
    q = (select(Track, Vertex).join(Vertex, Vertex.id == Track.vertex_id)
         .where(Track.pipeline_id == pipeline_id).order_by(Track.vertex_id))
    if state is not None:
        q = q.where(Track.state == state)
    if not output:
        q = q.options(defer(Track.stdout), defer(Track.stderr), defer(Track.script), defer(Track.inputs),
                      defer(Vertex.script), defer(Vertex.inputs))
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [(t, v) for t, v in s.execute(q)]


def run_track_rows(s: Session, pipeline_id: int, *, limit: int | None = None, offset: int = 0,
                   state: str | None = None) -> list:
    """``run_tracks_page`` without the output, as plain rows (no objects built: a page of 1,000
    tracks of a big run in a few milliseconds): vertex, state, attempt, exit_code, started_at,
    finished_at, error, log_path, worker, pool, not_before, vertex_id."""
    q = (select(Vertex.name.label("vertex"), Track.state, Track.attempt, Track.exit_code, Track.started_at,
                Track.finished_at, Track.error, Track.log_path, Track.worker, Track.pool, Track.not_before,
                Track.vertex_id)
         .join(Vertex, Vertex.id == Track.vertex_id)
         .where(Track.pipeline_id == pipeline_id).order_by(Track.vertex_id))  # declaration order (above)
    if state is not None:
        q = q.where(Track.state == state)
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return list(s.execute(q))


def counts_by_run(s: Session, pipeline_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Track counts by state for each run, aggregated in SQL."""
    out: dict[int, dict[str, int]] = {p: {} for p in pipeline_ids}
    if pipeline_ids:
        q = (select(Track.pipeline_id, Track.state, func.count()).where(Track.pipeline_id.in_(list(pipeline_ids)))
             .group_by(Track.pipeline_id, Track.state))
        for pipeline_id, state, n in s.execute(q):
            out[pipeline_id][state] = int(n)
    return out


def find_track(s: Session, pipeline_id: int, vertex: str) -> Track | None:
    return s.scalars(select(Track).join(Vertex, Vertex.id == Track.vertex_id)
                     .where(Track.pipeline_id == pipeline_id, Vertex.name == vertex)).one_or_none()


def plan_rows(s: Session, pipeline_id: int) -> list:
    """What a worker needs to run a pipeline's tracks, one light row per track (no ORM
    objects, JSON left undecoded): id, state, attempt, max_attempts, priority, pool, not_before, vertex,
    timeout, retry_delay, retry_backoff, cwd, env (decoded: usually null), script, schema (vertex inputs)
    and values (track inputs) as JSON text."""
    v = Vertex.__table__
    q = (select(_track.c.id, _track.c.state, _track.c.attempt, _track.c.max_attempts, _track.c.priority,
                _track.c.pool, _track.c.not_before,
                v.c.name.label("vertex"), v.c.timeout, v.c.retry_delay, v.c.retry_backoff, v.c.cwd, v.c.env,
                v.c.script, type_coerce(v.c.inputs, Text()).label("schema"),
                type_coerce(_track.c.inputs, Text()).label("values"))
         .select_from(_track.join(v, v.c.id == _track.c.vertex_id))
         .where(_track.c.pipeline_id == pipeline_id).order_by(v.c.position))
    return s.execute(q).all()


def run_tracks(s: Session, pipeline_id: int) -> list[tuple[Track, Vertex]]:
    """A run's tracks with their vertices, in declaration order."""
    # declaration order is vertex id order: a graph's vertices are inserted in order and never
    # move (an edit keeps its row, an added one comes last). Ordering by the track's vertex_id
    # walks the (pipeline_id, vertex_id) index and stops at the page; ordering by position
    # would sort every track of the run first (0.25 s for a page of a 100,000-track run)
    q = (select(Track, Vertex).join(Vertex, Vertex.id == Track.vertex_id)
         .where(Track.pipeline_id == pipeline_id).order_by(Track.vertex_id))
    return [(t, v) for t, v in s.execute(q)]


# --- execution: the hot path, SQL Core on the caller's connection -------------------------------
# One runner batch is a few of these statements in one transaction, whatever the batch size. They
# are built once: building a statement costs more than running it on SQLite.

_track = Track.__table__
#: characters of a log path the database keeps
LOG_PATH_LENGTH = _track.c.log_path.type.length
_ids = bindparam("ids", expanding=True)

#: a pending track is due unless it waits for its retry until a time still to come. "Now" is the
#: claiming worker's clock, as for every time the store writes and compares (heartbeats, leases)
_due = or_(_track.c.not_before.is_(None), _track.c.not_before <= bindparam("stamp"))
_CLAIM = (update(_track).where(_track.c.id.in_(_ids), _from(_track.c.state, CLAIM), _due)
          .values(state=CLAIM.target, attempt=_track.c.attempt + 1, worker=bindparam("worker"),
                  started_at=bindparam("stamp"), heartbeat_at=bindparam("stamp"), finished_at=None,
                  exit_code=None, error=None, not_before=None, changed_at=bindparam("stamp")))
_CLAIMED = select(_track.c.id, _track.c.attempt).where(_track.c.id.in_(_ids), _track.c.state == CLAIM.target,
                                                        _track.c.worker == bindparam("worker"))
_RECORD = (update(_track).where(_track.c.id == bindparam("track_id"), _from(_track.c.state, RECORD),
                                _track.c.attempt == bindparam("at_attempt"))
           .values(state=bindparam("target"), worker=None, started_at=bindparam("started_at"),
                   finished_at=bindparam("finished_at"), not_before=bindparam("not_before"),
                   exit_code=bindparam("exit_code"), error=bindparam("error"), stdout=bindparam("stdout"),
                   stderr=bindparam("stderr"), log_path=bindparam("log_path"), duration=bindparam("duration"),
                   changed_at=bindparam("changed_at")))
_n = bindparam("n")
# The target is a plain string: its type (VARCHAR) is inferred from it, as the column's is elsewhere
_RELEASED_NOW = and_(_track.c.waiting_on == _n, _from(_track.c.state, RELEASE))
# in this order, for MySQL (each SET sees the ones before it): the change's time and the state
# from the old state and count, the count last
_RELEASE = (update(_track).where(_track.c.id.in_(_ids))
            .ordered_values((_track.c.changed_at, case((_RELEASED_NOW, bindparam("stamp",
                                                                                type_=_track.c.changed_at.type)),
                                                       else_=_track.c.changed_at)),
                            (_track.c.state, case((_RELEASED_NOW, RELEASE.target.value), else_=_track.c.state)),
                            (_track.c.waiting_on, _track.c.waiting_on - _n)))
_RELEASE_RETURNING = _RELEASE.returning(_track.c.id, _track.c.state)
_RELEASED = select(_track.c.id).where(_track.c.id.in_(_ids), _track.c.state == RELEASE.target,
                                      _track.c.waiting_on == 0)
_UPSTREAM_FAILED = (update(_track).where(_track.c.id.in_(_ids), _from(_track.c.state, UPSTREAM_FAILED))
                    .values(state=UPSTREAM_FAILED.target, finished_at=bindparam("stamp"), changed_at=bindparam("stamp")))


def claim_tracks(conn: Connection, track_ids: Sequence[int], worker: str,
                 attempts: Mapping[int, int] | None = None) -> list[tuple[int, int]]:
    """Move pending tracks to running for ``worker``, each only if it is still pending (another
    worker may have taken it) and due (not waiting for its retry). Returns (track id, attempt)
    of the tracks this call claimed. ``attempts`` (track id -> attempts so far, as the caller last saw them) saves a query when
    every track was claimed."""
    if not track_ids:
        return []
    ids = list(track_ids)
    moved = conn.execute(_CLAIM, {"ids": ids, "worker": worker, "stamp": now()}).rowcount
    if attempts is not None and moved == len(ids) and all(i in attempts for i in ids):
        return [(i, attempts[i] + 1) for i in ids]
    # lost some to another worker (or attempts unknown): ask which are ours
    return [(i, a) for i, a in conn.execute(_CLAIMED, {"ids": ids, "worker": worker})]


class RowRefused(Exception):
    """The database refused an attempt's end as written (not a fault that retrying cures). The
    caller's transaction is unusable: roll it back and record the batch again with
    ``careful=True``. Not a DatabaseError, so that no retry loop waits it out."""


def _refusal(exc: BaseException) -> str | None:
    """Why the database refused a row, in safe text without the row's values, or None when
    ``exc`` is no refusal (a lost connection, a deadlock: the caller's retry cures those)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if not isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError, sa_exc.ProgrammingError)):
            return None
        exc = exc.orig or exc
    elif isinstance(exc, sa_exc.StatementError):  # raised while binding: the driver could not encode
        exc = exc.orig or exc
    elif not isinstance(exc, (ValueError, TypeError)):  # UnicodeError is a ValueError
        return None
    if isinstance(exc, UnicodeError):
        return f"{type(exc).__name__}: text the driver cannot encode"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ascii(f"{type(exc).__name__}: {text}"[:200])[1:-1]


def record_attempts(conn: Connection, ends: Sequence[Mapping], *, careful: bool = False) -> set[int]:
    """Write the ends of attempts, each only if its track is still running that attempt (a
    lease taken over or a cancelled run must not be overwritten), in one statement (executemany:
    one round trip where the driver pipelines it). Each end maps track_id, attempt, target,
    started_at, finished_at, exit_code, error, stdout, stderr, log_path, duration, and optionally
    not_before (a retry that waits: pending, not claimed before then). Returns the
    ids of the tracks written; when some were not, those that were are told apart by the state
    and end time this call wrote.

    A row the database refuses raises RowRefused. With ``careful`` each row is written in its own
    savepoint instead, and a refused one is written again without its output and log path, the
    reason appended to its error (state, exit code and times kept): one row never loses a batch."""
    if not ends:
        return set()
    stamp = now()
    rows = [{"track_id": e["track_id"], "at_attempt": e["attempt"], "target": RECORD.to(e["target"]),
             "started_at": e["started_at"], "finished_at": e["finished_at"], "exit_code": e["exit_code"],
             "error": e["error"], "stdout": e["stdout"], "stderr": e["stderr"], "log_path": e["log_path"],
             "duration": e["duration"], "not_before": e.get("not_before"), "changed_at": stamp} for e in ends]
    if careful:
        return {r["track_id"] for r in rows if _record_one(conn, r)}
    try:
        written = conn.execute(_RECORD, rows if len(rows) > 1 else rows[0]).rowcount
    except Exception as exc:
        why = _refusal(exc)
        if why is None:
            raise
        raise RowRefused(why) from exc
    ids = {r["track_id"] for r in rows}
    if written == len(rows):
        return ids
    if len(rows) == 1:
        return set()
    ours = {r["track_id"]: (r["target"], r["finished_at"]) for r in rows}
    now_rows = conn.execute(select(_track.c.id, _track.c.state, _track.c.finished_at)
                            .where(_track.c.id.in_(list(ids)))).all()
    return {i for i, state, finished_at in now_rows if (state, finished_at) == ours[i]}


def _record_one(conn: Connection, row: dict) -> bool:
    """One end in a savepoint; if refused, again in a safe form (see ``record_attempts``)."""
    why = None
    for attempt in range(3):
        if attempt == 1:  # without the free text and the path, the cause noted
            note = f"the database refused this attempt's output: {why}"
            row = {**row, "stdout": "", "stderr": "", "log_path": None,
                   "error": f"{row['error']}; {note}" if row["error"] else note}
        elif attempt == 2:  # the least: plain ASCII, state, exit code and times
            row = {**row, "error": ascii(row["error"])[1:-1][:2000], "duration": None}
        try:
            with conn.begin_nested():
                return conn.execute(_RECORD, row).rowcount == 1
        except Exception as exc:
            why = _refusal(exc)
            if why is None or attempt == 2:
                raise
    return False


def release_successors(conn: Connection, succeeded: Counter[int]) -> list[int]:
    """Count the succeeded predecessors of each track in ``succeeded`` (track id -> how many of
    its predecessors just succeeded); a track with none left becomes pending. O(out-degree): no
    scan of the graph. Returns the ids that are pending now."""
    if not succeeded:
        return []
    by_count: dict[int, list[int]] = {}
    stamp = now()
    for track_id, n in succeeded.items():
        by_count.setdefault(n, []).append(track_id)
    if conn.dialect.update_returning:  # SQLite, PostgreSQL: one statement per count
        return [i for n, ids in by_count.items()
                for i, state in conn.execute(_RELEASE_RETURNING, {"ids": ids, "n": n, "stamp": stamp})
                if state == RELEASE.target]
    for n, ids in by_count.items():
        conn.execute(_RELEASE, {"ids": ids, "n": n, "stamp": stamp})
    return list(conn.scalars(_RELEASED, {"ids": list(succeeded)}))


def mark_upstream_failed(conn: Connection, track_ids: Sequence[int]) -> None:
    """Tracks below a failure that never ran: waiting -> upstream_failed."""
    if track_ids:
        conn.execute(_UPSTREAM_FAILED, {"ids": list(track_ids), "stamp": now()})


# --- workers, leases, recovery ----------------------------------------------------------------

#: seconds a worker's heartbeat holds its tracks, unless it says otherwise (``--lease``)
DEFAULT_LEASE = settings.DEFAULT_LEASE

_pipeline = Pipeline.__table__
_worker = Worker.__table__
UNFINISHED = (T.WAITING, T.PENDING, T.RUNNING)
NOT_SUCCEEDED = (T.FAILED, T.UPSTREAM_FAILED, T.CANCELLED)

_HEARTBEAT = (update(_track).where(_track.c.id.in_(_ids), _track.c.worker == bindparam("holder"),
                                   _from(_track.c.state, HEARTBEAT))
              .values(heartbeat_at=bindparam("stamp")))
_HELD = select(_track.c.id).where(_track.c.id.in_(_ids), _track.c.worker == bindparam("worker"),
                                  _track.c.state == T.RUNNING)
_UNFINISHED = (select(_track.c.id).where(_track.c.pipeline_id == bindparam("pipeline_id"),
                                         _track.c.state.in_(UNFINISHED)).limit(1))
_NOT_SUCCEEDED = (select(_track.c.id).where(_track.c.pipeline_id == bindparam("pipeline_id"),
                                            _track.c.state.in_(NOT_SUCCEEDED)).limit(1))
_ANY_TRACK = select(_track.c.id).where(_track.c.pipeline_id == bindparam("pipeline_id")).limit(1)
_FINISH = (update(_pipeline).where(_pipeline.c.id == bindparam("pipeline_id"), _from(_pipeline.c.state, FINISH))
           .values(state=bindparam("target"), finished_at=bindparam("stamp")))


def register_worker(conn: Connection, name: str, host: str, pid: int, concurrency: int, lease: float) -> None:
    stamp = now()
    conn.execute(insert(_worker).values(name=name, host=host, pid=pid, concurrency=concurrency, lease=lease,
                                        started_at=stamp, heartbeat_at=stamp))


def stop_worker(conn: Connection, name: str) -> None:
    conn.execute(update(_worker).where(_worker.c.name == name).values(stopped_at=now()))


def heartbeat(conn: Connection, worker: str, held: Iterable[int]) -> dict[int, str]:
    """Renew the worker's heartbeat and the lease of every track it runs. Returns the tracks
    in ``held`` that are no longer its own, with their state now (``cancelled``, or taken back
    after its lease ran out): the worker must kill their processes and not record them."""
    stamp = now()
    conn.execute(update(_worker).where(_worker.c.name == worker).values(heartbeat_at=stamp))
    held = set(held)
    if not held:
        return {}
    renewed = conn.execute(_HEARTBEAT, {"ids": list(held), "holder": worker, "stamp": stamp}).rowcount
    if renewed == len(held):
        return {}
    lost = held - set(conn.scalars(_HELD, {"ids": list(held), "worker": worker}))
    return dict(conn.execute(select(_track.c.id, _track.c.state).where(_track.c.id.in_(list(lost)))).all())


def release_worker(conn: Connection, worker: str, track_ids: Sequence[int]) -> None:
    """The worker has killed the processes of tracks it lost: it no longer holds them (``cancel``
    waits for this)."""
    if track_ids:
        conn.execute(update(_track).where(_track.c.id.in_(list(track_ids)), _track.c.worker == worker,
                                          _track.c.state != T.RUNNING).values(worker=None))


def hand_back(conn: Connection, worker: str, track_id: int, attempt: int, reason: str) -> bool:
    """A track this worker claimed but will not finish (it is stopping): pending again, the
    attempt not counted."""
    return conn.execute(
        update(_track).where(_track.c.id == track_id, _track.c.worker == worker, _from(_track.c.state, HAND_BACK),
                             _track.c.attempt == attempt)
        .values(state=HAND_BACK.target, attempt=_track.c.attempt - 1, worker=None, error=reason,
                changed_at=now())).rowcount == 1


def hand_back_unheld(conn: Connection, worker: str, held: Iterable[int]) -> int:
    """After a database fault: tracks the database says ``worker`` runs but it does not (claimed
    by a commit whose acknowledgement was lost) go back to pending, the attempt not counted."""
    held = set(held)
    rows = conn.execute(select(_track.c.id, _track.c.attempt)
                        .where(_track.c.worker == worker, _track.c.state == T.RUNNING)).all()
    return sum(hand_back(conn, worker, i, a, "claimed while the database was failing") for i, a in rows
               if i not in held)


def finish_if_done(conn: Connection, pipeline_id: int) -> str | None:
    """Finish the pipeline when none of its tracks is unfinished: ``succeeded`` if all
    succeeded, else ``failed``; a pipeline with no track at all (its tracks deleted: every graph
    has a vertex) is ``failed``, never ``succeeded``. Returns the state it was given, or None."""
    if conn.execute(_UNFINISHED, {"pipeline_id": pipeline_id}).first() is not None:
        return None
    key = {"pipeline_id": pipeline_id}
    state = P.FAILED if conn.execute(_NOT_SUCCEEDED, key).first() or conn.execute(_ANY_TRACK, key).first() is None \
        else P.SUCCEEDED
    if conn.execute(_FINISH, {"pipeline_id": pipeline_id, "target": state, "stamp": now()}).rowcount:
        return state
    return None


def done_pipelines(conn: Connection) -> list[int]:
    """Running pipelines that have no unfinished track left, to be finished. Two workers
    recording a pipeline's last two tracks at the same moment may each see the other's as
    unfinished (and MariaDB's repeatable reads keep seeing it): every worker's sweep finishes
    such a pipeline within seconds (``lifecycle.finish_done``)."""
    unfinished = (select(_track.c.id).where(_track.c.pipeline_id == _pipeline.c.id, _track.c.state.in_(UNFINISHED))
                  .exists())
    return list(conn.scalars(select(_pipeline.c.id).where(_pipeline.c.state == P.RUNNING, ~unfinished)))


def claimable_pipelines(conn: Connection, worker: str, pipeline_id: int | None = None,
                        owned: Sequence[int] = ()) -> list[int]:
    """Running pipelines whose tracks ``worker`` may claim: those nobody owns that need no
    secret (which only the process they were given to holds), and of its own those it holds in
    memory (``owned``): one it owns but has not taken in yet (a server's run with secrets, handed
    in just after its commit) is not claimed without its secrets."""
    unowned = and_(_pipeline.c.owner.is_(None), _pipeline.c.secret_inputs == false())
    mine = and_(_pipeline.c.owner == worker, _pipeline.c.id.in_(list(owned))) if owned else false()
    q = select(_pipeline.c.id).where(_pipeline.c.state == P.RUNNING, or_(unowned, mine))
    if pipeline_id is not None:
        q = q.where(_pipeline.c.id == pipeline_id)
    return list(conn.scalars(q))


def pending_tracks(conn: Connection, pipeline_ids: Sequence[int], limit: int,
                   pools: Sequence[str] | None = None) -> list[tuple[int, int, str | None, float]]:
    """Up to ``limit`` pending tracks of these pipelines as (id, pipeline id, pool, priority), highest
    priority first, skipping rows another worker has locked (``FOR UPDATE SKIP LOCKED`` on
    MariaDB 10.6+ and PostgreSQL; SQLite's write lock serialises writers). Tracks of a pool
    with no free slot are left out, and so are tracks waiting for their retry (``not_before``
    still to come: a condition on the pending rows the indexes find, which are few); with
    ``pools``, only tracks of those pools are looked for."""
    if not pipeline_ids or limit <= 0:
        return []
    q = (select(_track.c.id, _track.c.pipeline_id, _track.c.pool, _track.c.priority)
         .where(_track.c.state == T.PENDING, _track.c.pipeline_id.in_(list(pipeline_ids)),
                or_(_track.c.not_before.is_(None), _track.c.not_before <= now()))
         .order_by(_track.c.priority.desc(), _track.c.id).limit(limit))
    if pools is None:
        q = q.where(or_(_track.c.pool.is_(None), _track.c.pool.in_(_OPEN_POOLS)))
    else:
        q = q.where(_track.c.pool.in_(list(pools)))
    if conn.dialect.name != "sqlite":
        q = q.with_for_update(skip_locked=True)
    return [tuple(row) for row in conn.execute(q)]


# --- concurrency pools ---------------------------------------------------------------------------

_pool = Pool.__table__
_in_pool = aliased(_track)
_RUNNING_IN_POOL = (select(func.count()).select_from(_in_pool)
                    .where(_in_pool.c.pool == _pool.c.name, _in_pool.c.state == T.RUNNING).scalar_subquery())
#: pools with a free slot, as a look in the database sees them (not locked: a claim checks again)
_OPEN_POOLS = select(_pool.c.name).where(_pool.c.size > _RUNNING_IN_POOL)
_names = bindparam("names", expanding=True)
# locked in name order: two workers that lock the same pools never wait on each other in a cycle
_LOCK_POOLS = select(_pool.c.name, _pool.c.size).where(_pool.c.name.in_(_names)).order_by(_pool.c.name) \
    .with_for_update()
_RUNNING_BY_POOL = (select(_track.c.pool, func.count()).where(_track.c.pool.in_(_names), _track.c.state == T.RUNNING)
                    .group_by(_track.c.pool))


def lock_pools(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """Lock these pools' rows until the transaction ends, in name order, and return their sizes
    (a pool that does not exist is left out). A worker locks the pools it may claim tracks of
    first in its transaction, before it touches any track row: every worker takes its locks in
    the same order, so none waits on another in a cycle; and no other claim of those pools'
    tracks can count the same free slots."""
    names = sorted(set(names))
    return dict(conn.execute(_LOCK_POOLS, {"names": names}).all()) if names else {}


def pool_room(conn: Connection, sizes: Mapping[str, int]) -> dict[str, int]:
    """Free slots of each pool locked by ``lock_pools`` (name -> size): its size less its running
    tracks, across every worker and run, as this transaction sees them now. (On MariaDB the
    connection must read committed rows, as the engine's does: see ``Database.open_connection``.)"""
    if not sizes:
        return {}
    running = dict(conn.execute(_RUNNING_BY_POOL, {"names": list(sizes)}).all())
    return {name: max(0, size - int(running.get(name, 0))) for name, size in sizes.items()}


# --- schedules -----------------------------------------------------------------------------------

def find_schedule(s: Session, name: str, *, lock: bool = False) -> Schedule | None:
    q = select(Schedule).where(Schedule.name == name)
    if lock:
        q = q.with_for_update()
    return s.scalars(q).one_or_none()


def get_schedule_by_id(s: Session, schedule_id: int, *, lock: bool = False) -> Schedule | None:
    q = select(Schedule).where(Schedule.id == schedule_id)
    if lock:
        q = q.with_for_update()
    return s.scalars(q).one_or_none()


def list_schedules(s: Session, graph: str | None = None) -> list[Schedule]:
    q = select(Schedule).order_by(Schedule.name)
    if graph is not None:
        q = q.where(Schedule.graph == graph)
    return list(s.scalars(q))


def add_schedule(s: Session, **fields: Any) -> Schedule:
    stamp = now()
    schedule = Schedule(**fields, created_at=stamp, updated_at=stamp)
    s.add(schedule)
    s.flush()
    return schedule


def update_schedule(s: Session, schedule: Schedule, **fields: Any) -> None:
    for key, value in fields.items():
        setattr(schedule, key, value)
    schedule.updated_at = now()
    s.flush()


def delete_schedule(s: Session, schedule: Schedule) -> None:
    s.delete(schedule)
    s.flush()


def due_schedules(s: Session, at: datetime, limit: int) -> list[int]:
    """Ids of the schedules not paused whose next fire time is at or before ``at``, the most
    overdue first (by the index on next_fire_at)."""
    return list(s.scalars(select(Schedule.id).where(Schedule.next_fire_at <= at, Schedule.paused.is_(False))
                          .order_by(Schedule.next_fire_at, Schedule.id).limit(limit)))


def next_due(s: Session) -> datetime | None:
    """The soonest fire time of any schedule not paused."""
    return s.scalar(select(func.min(Schedule.next_fire_at)).where(Schedule.paused.is_(False)))


def add_decision(s: Session, schedule_id: int, fire_at: datetime, decision: str, *, pipeline_id: int | None = None,
                 reason: str = "", scheduler: str, at: datetime | None = None) -> None:
    """Record the decision for one fire time. A second decision for it fails on the unique key
    (an IntegrityError): the caller's transaction, run and all, must go."""
    s.execute(insert(ScheduleDecision).values(schedule_id=schedule_id, fire_at=fire_at, decision=decision,
                                              pipeline_id=pipeline_id, reason=reason, decided_at=at or now(),
                                              scheduler=scheduler))


def decided_times(s: Session, schedule_id: int, since: datetime, until: datetime) -> set[datetime]:
    """The fire times in [since, until] a schedule has a decision for."""
    return set(s.scalars(select(ScheduleDecision.fire_at).where(
        ScheduleDecision.schedule_id == schedule_id, ScheduleDecision.fire_at >= since,
        ScheduleDecision.fire_at <= until)))


def schedule_history(s: Session, schedule_id: int, limit: int | None = None) -> list[ScheduleDecision]:
    q = (select(ScheduleDecision).where(ScheduleDecision.schedule_id == schedule_id)
         .order_by(ScheduleDecision.fire_at.desc()))
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


def runs_of_schedule(s: Session, schedule: str, state: str) -> list[int]:
    """Ids of the runs in ``state`` a schedule made at its fire times (not a backfill's), oldest
    fire time first (by the index on (schedule, state))."""
    return list(s.scalars(select(Pipeline.id).where(Pipeline.schedule == schedule, Pipeline.state == state,
                                                    Pipeline.backfill_id.is_(None))
                          .order_by(Pipeline.fire_at, Pipeline.id)))


def queued_owners(s: Session) -> tuple[list[str], list[int]]:
    """The schedules and the backfills that have a queued run."""
    schedules_ = list(s.scalars(select(Pipeline.schedule).where(Pipeline.state == P.QUEUED,
                                                                Pipeline.backfill_id.is_(None),
                                                                Pipeline.schedule.is_not(None)).distinct()))
    backfills = list(s.scalars(select(Pipeline.backfill_id).where(Pipeline.state == P.QUEUED,
                                                                  Pipeline.backfill_id.is_not(None)).distinct()))
    return sorted(schedules_), sorted(backfills)


def runs_of_backfill(s: Session, backfill_id: int, state: str, limit: int | None = None) -> list[int]:
    """Ids of a backfill's runs in ``state``, oldest fire time first."""
    q = (select(Pipeline.id).where(Pipeline.backfill_id == backfill_id, Pipeline.state == state)
         .order_by(Pipeline.fire_at, Pipeline.id))
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


def start_queued(s: Session, pipeline_id: int) -> bool:
    """A queued run starts: running from now (compare-and-set: False when it was not queued)."""
    return s.execute(update(Pipeline).where(Pipeline.id == pipeline_id, _from(Pipeline.state, START_QUEUED))
                     .values(state=START_QUEUED.target, started_at=now())).rowcount == 1


def get_backfill(s: Session, backfill_id: int, *, lock: bool = False) -> Backfill | None:
    q = select(Backfill).where(Backfill.id == backfill_id)
    if lock:
        q = q.with_for_update()
    return s.scalars(q).one_or_none()


def add_backfill(s: Session, **fields: Any) -> Backfill:
    backfill = Backfill(**fields, created_at=now())
    s.add(backfill)
    s.flush()
    return backfill


def runs_by_key(s: Session, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """run_key -> (run id, state) of the runs that carry one of ``keys``."""
    out: dict[str, tuple[int, str]] = {}
    keys = list(keys)
    for i in range(0, len(keys), 1000):
        out.update((k, (i_, st)) for k, i_, st in s.execute(
            select(Pipeline.run_key, Pipeline.id, Pipeline.state).where(Pipeline.run_key.in_(keys[i:i + 1000]))))
    return out


def find_pools(s: Session, names: Iterable[str], *, lock: bool = False) -> dict[str, Pool]:
    names = sorted(set(names))
    if not names:
        return {}
    q = select(Pool).where(Pool.name.in_(names)).order_by(Pool.name)
    if lock:
        q = q.with_for_update()
    return {p.name: p for p in s.scalars(q)}


def list_pools(s: Session) -> list[Pool]:
    return list(s.scalars(select(Pool).order_by(Pool.name)))


def set_pool(s: Session, name: str, size: int, description: str | None = None) -> tuple[Pool, int | None]:
    """Create the pool or change its size (and description, when given). Returns the pool
    and its size before (None when it is new)."""
    stamp = now()
    pool = find_pools(s, [name], lock=True).get(name)
    if pool is None:
        pool = Pool(name=name, size=size, description=description or "", created_at=stamp, updated_at=stamp)
        s.add(pool)
        s.flush()
        return pool, None
    before = pool.size
    pool.size = size
    if description is not None:
        pool.description = description
    pool.updated_at = stamp
    s.flush()
    return pool, before


def pool_usage(s: Session) -> dict[str, dict[str, int]]:
    """Pool name -> {state: tracks} for the tracks of every pool that are pending or running,
    counted in SQL."""
    out: dict[str, dict[str, int]] = {}
    q = (select(Track.pool, Track.state, func.count()).where(Track.pool.is_not(None),
                                                             Track.state.in_([T.PENDING, T.RUNNING]))
         .group_by(Track.pool, Track.state))
    for pool, state, n in s.execute(q):
        out.setdefault(pool, {})[state] = int(n)
    return out


def pool_users(s: Session, name: str) -> list[str]:
    """Names of the graphs with a vertex in the pool."""
    return list(s.scalars(select(Graph.name).distinct().join(Vertex, Vertex.graph_id == Graph.id)
                          .where(Vertex.pool == name).order_by(Graph.name)))


def delete_pool(s: Session, pool: Pool) -> None:
    s.delete(pool)
    s.flush()


def pipeline_state(conn: Connection, pipeline_id: int) -> str | None:
    return conn.scalar(select(_pipeline.c.state).where(_pipeline.c.id == pipeline_id))


def running_pipelines(conn: Connection, pipeline_ids: Sequence[int]) -> set[int]:
    """Those of ``pipeline_ids`` that are still running."""
    out: set[int] = set()
    ids = list(pipeline_ids)
    for i in range(0, len(ids), 500):
        out.update(conn.scalars(select(Pipeline.id).where(Pipeline.id.in_(ids[i:i + 500]),
                                                         Pipeline.state == P.RUNNING)))
    return out


def restart_pipeline(s: Session, pipeline_id: int, state: str, owner: str | None) -> bool:
    """``retry``: a finished run (still in ``state``) is running again, owned by ``owner`` (None:
    left to the workers). False when it changed meanwhile (compare-and-set). StateError when
    ``state`` is not one a run restarts from."""
    done = s.execute(update(Pipeline).where(Pipeline.id == pipeline_id, Pipeline.state == RESTART.source(state))
                     .values(state=RESTART.target, finished_at=None, owner=owner)).rowcount == 1
    s.expire_all()
    return done


def adopt_pipeline(s: Session, pipeline_id: int, owner_before: str | None, owner: str) -> bool:
    """``resume``: a running run's owner becomes ``owner``, if it is still running and still
    ``owner_before``'s (compare-and-set)."""
    held = Pipeline.owner.is_(None) if owner_before is None else Pipeline.owner == owner_before
    done = s.execute(update(Pipeline).where(Pipeline.id == pipeline_id, _from(Pipeline.state, ADOPT), held)
                     .values(owner=owner)).rowcount == 1
    s.expire_all()
    return done


def pipeline_graph(s: Session, pipeline_id: int):
    """(graph id, graph name, fire time) of a pipeline, or None."""
    return s.execute(select(Pipeline.graph_id, Graph.name, Pipeline.fire_at).join(Graph, Graph.id == Pipeline.graph_id)
                     .where(Pipeline.id == pipeline_id)).one_or_none()


def pipeline_owner(s: Session, pipeline_id: int) -> str | None:
    return s.scalar(select(Pipeline.owner).where(Pipeline.id == pipeline_id))


def expired_tracks(conn: Connection, leases: dict[str, float], default_lease: float,
                   dead: set[str] = frozenset()) -> list:
    """Running tracks whose worker is ``dead`` or has not renewed its heartbeat within its
    lease: rows of (id, pipeline_id, worker, attempt, max_attempts, heartbeat_at, started_at)."""
    stamp = now()
    rows = conn.execute(select(_track.c.id, _track.c.pipeline_id, _track.c.worker, _track.c.attempt,
                               _track.c.max_attempts, _track.c.heartbeat_at, _track.c.started_at)
                        .where(_track.c.state == T.RUNNING)).all()
    return [r for r in rows if r.worker in dead
            or r.heartbeat_at < stamp - timedelta(seconds=leases.get(r.worker, default_lease))]


def local_workers(conn: Connection, host: str) -> list[tuple[str, int]]:
    """(name, pid) of the workers registered from ``host`` that have not stopped."""
    return [(n, p) for n, p in conn.execute(select(_worker.c.name, _worker.c.pid)
                                            .where(_worker.c.host == host, _worker.c.stopped_at.is_(None)))]


def worker_hosts(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(select(_worker.c.name, _worker.c.host)).all())


def running_tracks(conn: Connection, pipeline_id: int) -> list:
    """Rows as ``expired_tracks``' of the pipeline's running tracks."""
    return conn.execute(select(_track.c.id, _track.c.pipeline_id, _track.c.worker, _track.c.attempt,
                               _track.c.max_attempts, _track.c.heartbeat_at, _track.c.started_at)
                        .where(_track.c.pipeline_id == pipeline_id, _track.c.state == T.RUNNING)).all()


def worker_leases(conn: Connection) -> dict[str, float]:
    return dict(conn.execute(select(_worker.c.name, _worker.c.lease)).all())


def take_back(conn: Connection, track_id: int, worker: str | None, attempt: int, target: str, reason: str,
              heartbeat_at: datetime | None = None, at: datetime | None = None) -> bool:
    """Take a running track back from a worker whose lease ran out: pending for another attempt,
    or failed (at ``at``, default now) when none is left. Compare-and-set on the worker and
    attempt, so a track that was renewed or recorded meanwhile is left alone."""
    q = update(_track).where(_track.c.id == track_id, _from(_track.c.state, TAKE_BACK), _track.c.attempt == attempt)
    q = q.where(_track.c.worker.is_(None) if worker is None else _track.c.worker == worker)
    if heartbeat_at is not None:  # renewed since it was seen expired: leave it
        q = q.where(_track.c.heartbeat_at <= heartbeat_at)
    stamp = at or now()
    values = {"state": TAKE_BACK.to(target), "worker": None, "error": reason, "changed_at": stamp}
    if target == T.FAILED:
        values["finished_at"] = stamp
    return conn.execute(q.values(**values)).rowcount == 1


def descendant_tracks(conn: Connection, pipeline_id: int, track_ids: Sequence[int]) -> list[int]:
    """The tracks of a pipeline below ``track_ids`` in its graph (for a failure found by the
    sweep, which has no plan of the run in memory). O(size of the run)."""
    rows = conn.execute(select(_track.c.id, _track.c.vertex_id).where(_track.c.pipeline_id == pipeline_id)).all()
    by_vertex = {v: t for t, v in rows}
    graph_id = conn.scalar(select(_pipeline.c.graph_id).where(_pipeline.c.id == pipeline_id))
    succs: dict[int, list[int]] = {}
    for tail, head in conn.execute(select(Edge.tail_id, Edge.head_id).where(Edge.graph_id == graph_id)):
        succs.setdefault(by_vertex[tail], []).append(by_vertex[head])
    return sorted(dag.descendants(list(track_ids), succs))


def running_owners(s: Session) -> set[str]:
    """The workers that own a running pipeline (``run``, ``resume``): they take no other."""
    return set(s.scalars(select(Pipeline.owner).where(Pipeline.state == P.RUNNING, Pipeline.owner.is_not(None))
                         .distinct()))


def live_workers(s: Session, default_lease: float) -> list[tuple[Worker, int]]:
    """Workers that have not stopped and whose heartbeat is within their lease, with the number
    of tracks each holds."""
    held = (select(Track.worker, func.count().label("n")).where(Track.state == T.RUNNING)
            .group_by(Track.worker).subquery())
    rows = s.execute(select(Worker, func.coalesce(held.c.n, 0)).outerjoin(held, held.c.worker == Worker.name)
                     .where(Worker.stopped_at.is_(None)).order_by(Worker.name)).all()
    stamp = now()
    return [(w, int(n)) for w, n in rows if w.heartbeat_at >= stamp - timedelta(seconds=w.lease or default_lease)]


#: the error of a track cancelled while it ran: the word of its state
_CANCELLED_ERROR = CANCEL_RUNNING.target.value


def cancel_pipeline(s: Session, pipeline_id: int) -> bool:
    """The run and every unfinished track become cancelled. Running tracks keep their worker,
    which kills the process at its next heartbeat and then lets go of them; their attempts end
    ``cancelled`` now (their rows written). The tracks are
    written before the run, in the order a worker locks them (its tracks, then the run it
    finishes), so that a cancel and a worker finishing the run do not deadlock. Returns False
    when the run was no longer running (it finished meanwhile): the caller rolls back."""
    stamp = now()
    s.execute(update(Track).where(Track.pipeline_id == pipeline_id, _from(Track.state, CANCEL_QUEUED))
              .values(state=CANCEL_QUEUED.target, finished_at=stamp, worker=None, changed_at=stamp))
    s.execute(update(Track).where(Track.pipeline_id == pipeline_id, _from(Track.state, CANCEL_RUNNING))
              .values(state=CANCEL_RUNNING.target, finished_at=stamp, error=_CANCELLED_ERROR, changed_at=stamp))
    # after the update, which locked those rows: a worker's record of one of them now waits, then
    # finds it cancelled and writes nothing, so no attempt ends twice
    s.execute(_CANCELLED_ATTEMPTS, {"pipeline_id": pipeline_id, "stamp": stamp})
    return s.execute(update(Pipeline).where(Pipeline.id == pipeline_id, _from(Pipeline.state, CANCEL_RUN))
                     .values(state=CANCEL_RUN.target, finished_at=stamp)).rowcount == 1


def track_holders(s: Session, pipeline_id: int) -> set[str]:
    """Workers that still hold tracks of the pipeline."""
    return set(s.scalars(select(Track.worker).distinct()
                         .where(Track.pipeline_id == pipeline_id, Track.worker.is_not(None))))


def forget_holders(s: Session, pipeline_id: int, workers: Iterable[str]) -> None:
    s.execute(update(Track).where(Track.pipeline_id == pipeline_id, Track.worker.in_(list(workers)),
                                  Track.state != T.RUNNING).values(worker=None))


def reset_unsucceeded(s: Session, pipeline_id: int) -> list[str]:
    """``retry``: failed, upstream_failed and cancelled tracks start again, each with its
    retries anew; a track waits for its predecessors that have not succeeded. Returns their
    vertex names."""
    rows = run_tracks(s, pipeline_id)
    if not rows:
        return []
    by_vertex = {v.id: t for t, v in rows}
    edges = s.execute(select(Edge.tail_id, Edge.head_id).where(Edge.graph_id == rows[0][1].graph_id)).all()
    again = {t.id for t, _ in rows if t.state in RESET.sources}
    waiting_on = dict.fromkeys(again, 0)
    for tail, head in edges:
        if by_vertex[head].id in again and by_vertex[tail].state != T.SUCCEEDED:
            waiting_on[by_vertex[head].id] += 1
    for t, v in rows:
        if t.id in again:
            s.execute(update(Track).where(Track.id == t.id, _from(Track.state, RESET)).values(
                state=T.PENDING if waiting_on[t.id] == 0 else T.WAITING, waiting_on=waiting_on[t.id],
                max_attempts=t.attempt + v.retries + 1, exit_code=None, error=None, started_at=None,
                finished_at=None, worker=None, not_before=None, changed_at=now()))
    return [v.name for t, v in rows if t.id in again]


# --- history ----------------------------------------------------------------------------------

_FINISHED = (P.SUCCEEDED, P.FAILED, P.CANCELLED)


def old_finished_runs(conn: Connection, before: datetime, limit: int) -> list[int]:
    """Up to ``limit`` runs that finished before ``before``, oldest first: candidates for
    ``delete_runs``, which checks again."""
    return list(conn.scalars(select(_pipeline.c.id).where(_pipeline.c.state.in_(_FINISHED),
                                                          _pipeline.c.finished_at < before)
                             .order_by(_pipeline.c.id).limit(limit)))


def count_old_finished_runs(conn: Connection, before: datetime) -> tuple[int, int]:
    """How many runs finished before ``before``, and how many tracks they have."""
    old = select(_pipeline.c.id).where(_pipeline.c.state.in_(_FINISHED), _pipeline.c.finished_at < before)
    runs = conn.scalar(select(func.count()).select_from(old.subquery())) or 0
    tracks = conn.scalar(select(func.count()).select_from(_track).where(_track.c.pipeline_id.in_(old))) or 0
    return runs, tracks


def delete_runs(conn: Connection, pipeline_ids: Sequence[int],
                before: datetime | None = None) -> tuple[list[int], int]:
    """Delete those of these runs that are finished (and, with ``before``, finished before it)
    at the moment of deletion, with their tracks; returns (the runs deleted, their tracks). The
    runs are locked with that condition first, so one retried since it was selected (running
    again, or finished anew) is left whole. Only rows of finished runs are locked: running work
    never waits on a prune (``retry`` locks its run before its tracks, so the two queue up)."""
    if not pipeline_ids:
        return [], 0
    q = select(_pipeline.c.id).where(_pipeline.c.id.in_(list(pipeline_ids)), _pipeline.c.state.in_(_FINISHED))
    if before is not None:
        q = q.where(_pipeline.c.finished_at < before)
    if conn.dialect.name != "sqlite":  # SQLite: the writer's lock, taken at BEGIN, covers it
        q = q.with_for_update()
    ids = list(conn.scalars(q.order_by(_pipeline.c.id)))
    if not ids:
        return [], 0
    _delete_attempts(conn, ids)  # before their tracks: no cascade relied on
    tracks = conn.execute(delete(_track).where(_track.c.pipeline_id.in_(ids))).rowcount  # first: no cascades
    conn.execute(delete(_pipeline).where(_pipeline.c.id.in_(ids)))
    return ids, tracks



# --- why tracks wait: the facts of ``reasons``, for a page of a run's tracks -------------------
# Each query is bounded by the page (its vertex ids, 1,000 at a time), never by the run's size.

_edge = Edge.__table__
#: vertex ids per statement: a page of up to 100,000 tracks stays within every backend's limit of
#: bound parameters
_CHUNK = 1000


def _chunks(ids: Iterable[int]) -> list[list[int]]:
    ordered = sorted(set(ids))
    return [ordered[i:i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


def _predecessors(pipeline_id: int, graph_id: int, vertex_ids: Sequence[int]) -> Any:
    """(head_id, tail_id, state): the edges into ``vertex_ids`` with the state of their tail's
    track in the run. The state is read by a subquery per edge (the (pipeline_id, vertex_id)
    index), so that no planner joins the run's every track to the page's few thousand edges
    (PostgreSQL hashes the whole run otherwise: 2-3 times slower on 100,000 tracks, and slower
    as the run grows)."""
    tail = _track.alias("tail")
    state = (select(tail.c.state).where(tail.c.pipeline_id == pipeline_id, tail.c.vertex_id == _edge.c.tail_id)
             .scalar_subquery())
    return (select(_edge.c.head_id, _edge.c.tail_id, state.label("state"))
            .where(_edge.c.graph_id == graph_id, _edge.c.head_id.in_(list(vertex_ids))).subquery())


def unmet_predecessors(s: Session, pipeline_id: int, graph_id: int, vertex_ids: Iterable[int],
                       limit: int) -> dict[int, tuple[list[str], int]]:
    """Vertex id -> (the names of up to ``limit`` of its predecessors whose tracks in the run have
    not succeeded, in declaration order; how many such predecessors it has), for those of
    ``vertex_ids`` that have one. The rows are cut per vertex in SQL (a window over the edges that
    reach it), so a vertex below 1,000 unfinished others sends ``limit`` names, not 1,000."""
    out: dict[int, tuple[list[str], int]] = {}
    for chunk in _chunks(vertex_ids):
        edges = _predecessors(pipeline_id, graph_id, chunk)
        unmet = (select(edges.c.head_id, edges.c.tail_id,
                        func.row_number().over(partition_by=edges.c.head_id, order_by=edges.c.tail_id).label("n"),
                        func.count().over(partition_by=edges.c.head_id).label("total"))
                 .where(edges.c.state != T.SUCCEEDED).subquery())
        q = (select(unmet.c.head_id, Vertex.name, unmet.c.total).join(Vertex, Vertex.id == unmet.c.tail_id)
             .where(unmet.c.n <= limit).order_by(unmet.c.head_id, unmet.c.n))
        for head, name, total in s.execute(q):
            out.setdefault(head, ([], int(total)))[0].append(name)
    return out


def failed_ancestors(s: Session, pipeline_id: int, graph_id: int, vertex_ids: Iterable[int]) -> dict[int, str | None]:
    """Vertex id -> the name of a failed ancestor of its track in the run, for each of
    ``vertex_ids`` (upstream_failed tracks): its first failed predecessor (in declaration order)
    if it has one, else the one found so from its first upstream_failed predecessor, and so on up
    (None when the walk finds none). One statement per level walked: each vertex follows one
    predecessor, so no level asks about more vertices than were asked about."""
    #: vertex id -> (its first failed predecessor, its first upstream_failed one)
    step: dict[int, tuple[int | None, int | None]] = {}
    frontier = set(vertex_ids)
    while frontier:
        for chunk in _chunks(frontier):
            edges = _predecessors(pipeline_id, graph_id, chunk)
            q = (select(edges.c.head_id, func.min(case((edges.c.state == T.FAILED, edges.c.tail_id))),
                        func.min(case((edges.c.state == T.UPSTREAM_FAILED, edges.c.tail_id))))
                 .where(edges.c.state.in_([T.FAILED, T.UPSTREAM_FAILED])).group_by(edges.c.head_id))
            step.update((head, (f, u)) for head, f, u in s.execute(q))
        for v in frontier:
            step.setdefault(v, (None, None))
        frontier = {u for f, u in (step[v] for v in frontier) if f is None and u is not None and u not in step}
    found: dict[int, int | None] = {}
    for start in set(vertex_ids):
        v: int | None = start
        while v is not None and step[v][0] is None:
            v = step[v][1]
        found[start] = None if v is None else step[v][0]
    names = names_of_vertices(s, {f for f in found.values() if f is not None})
    return {start: None if f is None else names[f] for start, f in found.items()}


def pool_figures(s: Session, names: Iterable[str], limit: int) -> dict[str, tuple[int, int, list[int]]]:
    """Pool name -> (its size, its running tracks across every run, the runs they belong to: up
    to ``limit``, lowest id first) for these pools; a pool that does not exist has size 0 (a
    claim counts it so: no slot). Reads the running tracks of these pools only, by state."""
    names = sorted(set(names))
    if not names:
        return {}
    sizes = dict(s.execute(select(Pool.name, Pool.size).where(Pool.name.in_(names))).all())
    out = {name: (int(sizes.get(name, 0)), 0, []) for name in names}
    q = (select(_track.c.pool, _track.c.pipeline_id, func.count())
         .where(_track.c.state == T.RUNNING, _track.c.pool.in_(names))
         .group_by(_track.c.pool, _track.c.pipeline_id).order_by(_track.c.pool, _track.c.pipeline_id))
    for pool, pipeline_id, n in s.execute(q):
        size, running, held = out[pool]
        if len(held) < limit:
            held.append(pipeline_id)
        out[pool] = (size, running + int(n), held)
    return out


# --- API tokens ---------------------------------------------------------------------------------

def add_token(s: Session, name: str, role: str, digest: str) -> Token:
    token = Token(name=name, role=role, digest=digest, created_at=now())
    s.add(token)
    s.flush()
    return token


def find_token(s: Session, name: str) -> Token | None:
    return s.execute(select(Token).where(Token.name == name)).scalar_one_or_none()


def list_tokens(s: Session) -> list[Token]:
    return list(s.execute(select(Token).order_by(Token.name)).scalars())


def count_tokens(s: Session) -> int:
    return s.execute(select(func.count()).select_from(Token)).scalar_one()


def delete_token(s: Session, token: Token) -> None:
    s.delete(token)


def token_by_digest(conn: Connection, digest: str) -> tuple[int, str, str, datetime | None] | None:
    """(id, name, role, last_used_at) of the token whose SHA-256 is ``digest``."""
    row = conn.execute(select(Token.id, Token.name, Token.role, Token.last_used_at)
                       .where(Token.digest == digest)).first()
    return None if row is None else (row.id, row.name, row.role, row.last_used_at)


def touch_token(conn: Connection, token_id: int, at: datetime, older_than: datetime) -> None:
    """Set the token's last use to ``at`` if it was last used before ``older_than`` (so a
    busy client writes its token's row once in a while, not at every request)."""
    conn.execute(update(Token).where(Token.id == token_id)
                 .where(or_(Token.last_used_at.is_(None), Token.last_used_at < older_than))
                 .values(last_used_at=at))



# --- page sessions ------------------------------------------------------------------------------

def add_session(s: Session, token_id: int, digest: str, expires_at: datetime) -> None:
    s.add(WebSession(digest=digest, token_id=token_id, created_at=now(), expires_at=expires_at))


def session_by_digest(conn: Connection, digest: str, at: datetime) -> tuple[int, str, str] | None:
    """(token id, token name, role) of the unexpired session whose cookie's SHA-256 is ``digest``."""
    row = conn.execute(select(Token.id, Token.name, Token.role).join(WebSession, WebSession.token_id == Token.id)
                       .where(WebSession.digest == digest, WebSession.expires_at > at)).first()
    return None if row is None else (row.id, row.name, row.role)


def delete_session(s: Session, digest: str) -> int:
    return s.execute(delete(WebSession).where(WebSession.digest == digest)).rowcount


def delete_sessions(s: Session, *, token_id: int | None = None, expired_before: datetime | None = None) -> int:
    """Delete the sessions of ``token_id``, or those expired before ``expired_before``."""
    query = delete(WebSession)
    if token_id is not None:
        query = query.where(WebSession.token_id == token_id)
    if expired_before is not None:
        query = query.where(WebSession.expires_at < expired_before)
    return s.execute(query).rowcount


# --- attempts: every ended attempt of a track, for a run's timeline --------------------------------

_attempt = TrackAttempt.__table__
#: characters of an attempt's error its row keeps (the track keeps its last attempt's whole)
ATTEMPT_ERROR_LENGTH = 500
_ADD_ATTEMPTS = insert(_attempt)
_stamp = bindparam("stamp", type_=_attempt.c.finished_at.type)
#: the attempts a cancel ended: the run's tracks it just moved from running (they alone keep a
#: worker; the waiting and pending ones it moved lose theirs), at its time
_CANCELLED_ATTEMPTS = _ADD_ATTEMPTS.from_select(
    ["track_id", "attempt", "worker", "started_at", "finished_at", "outcome", "exit_code", "error"],
    select(_track.c.id, _track.c.attempt, _track.c.worker, func.coalesce(_track.c.started_at, _stamp), _stamp,
           literal(A.CANCELLED.value, _attempt.c.outcome.type), null(), literal(_CANCELLED_ERROR, Text()))
    .where(_track.c.pipeline_id == bindparam("pipeline_id"), _track.c.state == CANCEL_RUNNING.target,
           _track.c.worker.is_not(None), _track.c.finished_at == _stamp, _track.c.attempt >= 1))


def _attempt_row(row: Mapping[str, Any]) -> dict:
    error = row.get("error")
    return {"track_id": row["track_id"], "attempt": row["attempt"], "worker": row.get("worker"),
            "started_at": row["started_at"], "finished_at": row["finished_at"], "outcome": A(row["outcome"]).value,
            "exit_code": row.get("exit_code"), "error": error[:ATTEMPT_ERROR_LENGTH] if error else error}


def add_attempts(conn: Connection, rows: Sequence[Mapping[str, Any]], *, careful: bool = False) -> None:
    """Write ended attempts, each a mapping of track_id, attempt, worker, started_at,
    finished_at, outcome (an ``AttemptOutcome``), exit_code and error (cut to
    ``ATTEMPT_ERROR_LENGTH``), in one statement (executemany). The caller writes them in the
    transaction that moved their tracks, for the ends it did write: a track's attempt ends once.

    A row the database refuses raises RowRefused (as ``record_attempts``). With ``careful``
    each row goes in its own savepoint, a refused one again with its error in plain ASCII, and
    one refused again is left out: the tracks' writes stand, whatever the history lacks."""
    if not rows:
        return
    rows = [_attempt_row(r) for r in rows]
    if not careful:
        try:
            conn.execute(_ADD_ATTEMPTS, rows if len(rows) > 1 else rows[0])
        except Exception as exc:
            why = _refusal(exc)
            if why is None:
                raise
            raise RowRefused(why) from exc
        return
    for row in rows:
        for form in (row, {**row, "error": ascii(row["error"])[1:-1][:ATTEMPT_ERROR_LENGTH] if row["error"] else None}):
            try:
                with conn.begin_nested():
                    conn.execute(_ADD_ATTEMPTS, form)
                break
            except Exception as exc:
                if _refusal(exc) is None:
                    raise


def _delete_attempts(conn: Connection, pipeline_ids: Sequence[int]) -> None:
    """Delete the attempts of these runs' tracks."""
    of_runs = _track.c.pipeline_id.in_(list(pipeline_ids))
    if conn.dialect.name in ("mysql", "mariadb"):
        # MariaDB (before 11.1) plans a one-table DELETE ... IN (SELECT ...) as a scan of every
        # attempt: a join starts from the runs' tracks
        q = delete(_attempt).where(_attempt.c.track_id == _track.c.id, of_runs)
    else:
        q = delete(_attempt).where(_attempt.c.track_id.in_(select(_track.c.id).where(of_runs)))
    conn.execute(q)


_vertex = Vertex.__table__
_of_run = _track.c.pipeline_id == bindparam("pipeline_id")
# The page is cut from the keys alone (start, vertex, attempt and the worker: a small sort, where
# whole rows with their text made SQLite's and MariaDB's sorts two or three times slower), then
# each of its rows is read by primary key: its vertex's name and, ended, its attempt's row. A name
# joined before the sort also made MariaDB's planner start from every vertex of every graph.
_ran = (select(_track.c.vertex_id, _attempt.c.track_id, _attempt.c.attempt, _attempt.c.started_at,
               _attempt.c.worker, literal(False).label("in_progress"))
        .select_from(_attempt.join(_track, _track.c.id == _attempt.c.track_id)).where(_of_run))
#: the attempts that run now, from their tracks
_running = (select(_track.c.vertex_id, _track.c.id, _track.c.attempt, _track.c.started_at, _track.c.worker,
                   literal(True))
            .where(_of_run, _track.c.state == T.RUNNING))
_keys = union_all(_ran, _running).subquery()
_page = (select(_keys).order_by(_keys.c.started_at, _keys.c.vertex_id, _keys.c.attempt)
         .limit(bindparam("limit", type_=BigInteger())).offset(bindparam("offset", type_=BigInteger())).subquery())
_ended = aliased(_attempt)
_ATTEMPTS_PAGE = (
    select(_vertex.c.name.label("vertex"), _page.c.attempt, _page.c.worker, _page.c.started_at,
           _ended.c.finished_at, func.coalesce(_ended.c.outcome, RUNNING_ATTEMPT).label("outcome"),
           _ended.c.exit_code, _ended.c.error)
    .select_from(_page.join(_vertex, _vertex.c.id == _page.c.vertex_id)
                 .outerjoin(_ended, and_(_ended.c.track_id == _page.c.track_id, _ended.c.attempt == _page.c.attempt,
                                         ~_page.c.in_progress)))
    .order_by(_page.c.started_at, _page.c.vertex_id, _page.c.attempt))
_ATTEMPTS_TOTAL = select(
    select(func.count()).select_from(_attempt.join(_track, _track.c.id == _attempt.c.track_id)).where(_of_run)
    .scalar_subquery()
    + select(func.count()).select_from(_track).where(_of_run, _track.c.state == T.RUNNING).scalar_subquery())


def run_attempts(s: Session, pipeline_id: int, *, limit: int, offset: int = 0) -> list:
    """A page of a run's attempts, by start (then declaration order, then number): those that
    ended, from their rows, and those that run now, from their tracks (outcome
    ``RUNNING_ATTEMPT``, no end). Rows of vertex, attempt, worker, started_at, finished_at,
    outcome, exit_code, error. One statement, whatever the run's size: the run's tracks by
    index, their attempts by primary key, one sort of their keys, then the page's rows."""
    return list(s.execute(_ATTEMPTS_PAGE, {"pipeline_id": pipeline_id, "limit": limit, "offset": offset}))


def count_run_attempts(s: Session, pipeline_id: int) -> int:
    """How many attempts ``run_attempts`` has for the run, in all."""
    return int(s.execute(_ATTEMPTS_TOTAL, {"pipeline_id": pipeline_id}).scalar_one())


# --- the audit log, idempotency keys ----------------------------------------------------------

def add_audit(s: Session, actor: str, action: str, target: str, detail: str = "") -> None:
    s.add(Audit(at=now(), actor=actor, action=action, target=target, detail=detail))


def list_audit(s: Session, *, limit: int, offset: int = 0) -> list[Audit]:
    """A page of the audit log, newest first."""
    return list(s.execute(select(Audit).order_by(Audit.id.desc()).limit(limit).offset(offset)).scalars())


def find_idempotency(s: Session, actor: str, key: str) -> Idempotency | None:
    return s.execute(select(Idempotency).where(Idempotency.actor == actor, Idempotency.key == key)
                     ).scalar_one_or_none()


def add_idempotency(s: Session, actor: str, key: str, digest: str, pipeline_id: int) -> None:
    s.add(Idempotency(actor=actor, key=key, digest=digest, pipeline_id=pipeline_id, created_at=now()))
    s.flush()


def delete_idempotency(s: Session, row: Idempotency) -> None:
    s.delete(row)
    s.flush()


# --- figures for monitoring ----------------------------------------------------------------------

def runs_by_state(s: Session) -> dict[str, int]:
    return {state: int(n) for state, n in s.execute(select(Pipeline.state, func.count()).group_by(Pipeline.state))}


def running_tracks_by_state(s: Session) -> dict[str, int]:
    """The tracks of the running runs, by state (a run that has ended is history, not load)."""
    q = (select(Track.state, func.count()).join(Pipeline, Pipeline.id == Track.pipeline_id)
         .where(Pipeline.state == P.RUNNING).group_by(Track.state))
    return {state: int(n) for state, n in s.execute(q)}


def runs_to_watch(s: Session, ids: Iterable[int], after: int) -> list:
    """Rows (id, graph, state) of every running pipeline, of the pipelines ``ids`` whatever
    their state, and of every pipeline whose id is over ``after`` (started since): three reads by
    index (state, and the primary key twice), so that no OR keeps a planner from its indexes."""
    def read(where) -> list:
        return list(s.execute(select(Pipeline.id, Graph.name.label("graph"), Pipeline.state)
                              .join(Graph, Graph.id == Pipeline.graph_id).where(where)))
    ids = sorted(set(ids))
    rows = {r.id: r for r in read(Pipeline.state == P.RUNNING)}
    for i in range(0, len(ids), 1000):
        rows.update((r.id, r) for r in read(Pipeline.id.in_(ids[i:i + 1000])))
    rows.update((r.id, r) for r in read(Pipeline.id > after))
    return [rows[i] for i in sorted(rows)]


def newest_pipeline_id(s: Session) -> int:
    return s.scalar(select(func.max(Pipeline.id))) or 0


def track_activity(s: Session, pipeline_ids: Sequence[int], since: datetime) -> dict[int, tuple[datetime, int]]:
    """Pipeline id -> (its newest track change, how many of its tracks changed) at or after
    ``since``, by the index on (pipeline_id, changed_at); pipelines with no change are left out."""
    out: dict[int, tuple[datetime, int]] = {}
    ids = list(pipeline_ids)
    for i in range(0, len(ids), 1000):
        q = (select(Track.pipeline_id, func.max(Track.changed_at), func.count())
             .where(Track.pipeline_id.in_(ids[i:i + 1000]), Track.changed_at >= since).group_by(Track.pipeline_id))
        out.update((p, (newest, int(n))) for p, newest, n in s.execute(q))  # max() keeps the column's type
    return out


def changed_tracks(s: Session, pipeline_id: int, since: datetime) -> list[tuple[Track, str]]:
    """The tracks of a pipeline whose state changed at or after ``since`` (by the index on
    (pipeline_id, changed_at)), with their vertex names, oldest change first."""
    q = (select(Track, Vertex.name).join(Vertex, Vertex.id == Track.vertex_id)
         .where(Track.pipeline_id == pipeline_id, Track.changed_at >= since)
         .options(defer(Track.stdout), defer(Track.stderr), defer(Track.script), defer(Track.inputs))
         .order_by(Track.changed_at, Track.id))
    return [(t, name) for t, name in s.execute(q)]


# --- what the pages draw -----------------------------------------------------------------------

def vertex_names(s: Session, graph_id: int) -> list[str]:
    """The graph's vertex names in declaration order (nothing else read: a 10,000-vertex
    graph's names in a few milliseconds)."""
    return list(s.scalars(select(Vertex.name).where(Vertex.graph_id == graph_id).order_by(Vertex.position)))


def last_run(s: Session, graph_ids: Sequence[int]) -> Pipeline | None:
    """The newest run of these versions of a graph."""
    return s.scalars(select(Pipeline).where(Pipeline.graph_id.in_(list(graph_ids)))
                     .order_by(Pipeline.id.desc()).limit(1)).first()


def track_states(s: Session, pipeline_id: int) -> dict[str, tuple[str, float]]:
    """Vertex name -> its track's state and priority (its critical path's length when the run
    started) in the run."""
    q = (select(Vertex.name, Track.state, Track.priority).join(Vertex, Vertex.id == Track.vertex_id)
         .where(Track.pipeline_id == pipeline_id))
    return {name: (state, priority) for name, state, priority in s.execute(q)}


def last_runs_by_graph(s: Session) -> dict[str, Pipeline]:
    """Graph name -> its newest run (any version)."""
    newest = select(func.max(Pipeline.id)).join(Graph, Graph.id == Pipeline.graph_id).group_by(Graph.name)
    q = select(Graph.name, Pipeline).join(Graph, Graph.id == Pipeline.graph_id).where(Pipeline.id.in_(newest))
    return {name: p for name, p in s.execute(q)}


def run_states_since(s: Session, since: datetime) -> dict[str, dict[str, int]]:
    """Graph name -> run state -> how many of its runs started at or after ``since``, in SQL."""
    q = (select(Graph.name, Pipeline.state, func.count()).join(Graph, Graph.id == Pipeline.graph_id)
         .where(Pipeline.started_at >= since).group_by(Graph.name, Pipeline.state))
    out: dict[str, dict[str, int]] = {}
    for name, state, n in s.execute(q):
        out.setdefault(name, {})[state] = int(n)
    return out


def next_fires(s: Session) -> dict[str, datetime]:
    """Graph name -> the next fire time of its unpaused schedules."""
    q = (select(Schedule.graph, func.min(Schedule.next_fire_at)).where(Schedule.paused.is_(False))
         .group_by(Schedule.graph))
    return {g: at for g, at in s.execute(q) if at is not None}


def finished_runs_since(s: Session, since: datetime, graph_ids: Sequence[int] | None = None) -> list:
    """(graph name, started_at, finished_at, state) of the runs finished and started at or
    after ``since``, oldest first."""
    q = (select(Graph.name, Pipeline.started_at, Pipeline.finished_at, Pipeline.state)
         .join(Graph, Graph.id == Pipeline.graph_id)
         .where(Pipeline.started_at >= since, Pipeline.finished_at.is_not(None)).order_by(Pipeline.id))
    if graph_ids is not None:
        q = q.where(Pipeline.graph_id.in_(list(graph_ids)))
    return list(s.execute(q))


def vertex_runs(s: Session, graph_ids: Sequence[int], vertex: str, runs: int) -> list:
    """(run id, started_at, duration, state) of ``vertex``'s track in each of the last ``runs``
    runs of these versions of a graph, oldest first."""
    recent = list(s.scalars(select(Pipeline.id).where(Pipeline.graph_id.in_(list(graph_ids)))
                            .order_by(Pipeline.id.desc()).limit(runs)))
    if not recent:
        return []
    q = (select(Track.pipeline_id, Track.started_at, Track.duration, Track.state)
         .join(Vertex, Vertex.id == Track.vertex_id)
         .where(Track.pipeline_id.in_(recent), Vertex.name == vertex).order_by(Track.pipeline_id))
    return list(s.execute(q))


def critical_chain(s: Session, pipeline_id: int, graph_id: int) -> list[str]:
    """The names along a run's critical chain as its priorities (each track's heaviest path
    to a sink, fixed when the run started) hold it: from the root with the largest priority,
    to the successor with the largest one, and so on (ties: the first declared). One statement,
    a recursive walk over the edge and track indexes, each track's priority read by a subquery
    on the (pipeline_id, vertex_id) index (as ``_predecessors`` reads states): no read of the
    graph's every edge, and no plan that joins the run's every track at each step."""
    track = _track.alias("t")

    def priority(vertex_id: Any) -> Any:
        return (select(track.c.priority).where(track.c.pipeline_id == pipeline_id, track.c.vertex_id == vertex_id)
                .scalar_subquery())

    into = _edge.alias("into")
    root = (select(_vertex.c.id).where(_vertex.c.graph_id == graph_id,
                                       ~select(into.c.head_id).where(into.c.graph_id == graph_id,
                                                                     into.c.head_id == _vertex.c.id).exists())
            .order_by(priority(_vertex.c.id).desc(), _vertex.c.id).limit(1).scalar_subquery())
    chain = select(root.label("vertex_id"), literal(0).label("n")).cte("chain", recursive=True)
    step = (select(_edge.c.head_id).where(_edge.c.graph_id == graph_id, _edge.c.tail_id == chain.c.vertex_id)
            .order_by(priority(_edge.c.head_id).desc(), _edge.c.head_id).limit(1).scalar_subquery())
    chain = chain.union_all(select(step, chain.c.n + 1).where(chain.c.vertex_id.is_not(None)))
    q = select(Vertex.name).join(chain, chain.c.vertex_id == Vertex.id).order_by(chain.c.n)
    dialect = s.get_bind().dialect
    if dialect.name in ("mysql", "mariadb"):
        # a step per vertex of the chain: MariaDB stops a recursion after 1,000 by default (and
        # says nothing), MySQL fails; a sealed graph has no cycle, so its size bounds the walk
        limit = "max_recursive_iterations" if getattr(dialect, "is_mariadb", False) else "cte_max_recursion_depth"
        s.execute(text(f"SET SESSION {limit} = 4294967295"))
    return list(s.scalars(q))


def time_left(s: Session, pipeline_id: int) -> tuple[float | None, list[tuple[float, datetime | None]]]:
    """What a run's ETA weighs: the largest priority of its waiting and pending tracks (None:
    none), and (priority, started_at) of each running one; by the (pipeline_id, state) index."""
    most = s.scalar(select(func.max(_track.c.priority))
                    .where(_track.c.pipeline_id == pipeline_id, _track.c.state.in_([T.WAITING, T.PENDING])))
    running = s.execute(select(_track.c.priority, _track.c.started_at)
                        .where(_track.c.pipeline_id == pipeline_id, _track.c.state == T.RUNNING)).all()
    return most, [(priority, at) for priority, at in running]


def names_of_vertices(s: Session, vertex_ids: Iterable[int]) -> dict[int, str]:
    """Vertex id -> name, for these vertices."""
    names: dict[int, str] = {}
    for chunk in _chunks(vertex_ids):
        names.update(s.execute(select(Vertex.id, Vertex.name).where(Vertex.id.in_(chunk))).all())
    return names
