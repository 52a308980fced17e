"""SQLAlchemy tables. No behaviour here: every query lives in ``store``.

The database enforces what it can: unique (graph name, version), unique vertex names within a
graph, edges that join two vertices of their own graph (composite foreign keys), once,
never a vertex to itself, and the state words.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import simplejson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from pipeline_engine.roles import Role
from pipeline_engine.schedules import CatchUp, Decision, Overlap
from pipeline_engine.states import AttemptOutcome, GraphStatus, PipelineState, TrackState

NAME_LENGTH = 200
#: characters of a vertex's working directory the database keeps
CWD_LENGTH = 1024

# Stable constraint names, so migrations and the DDL in sql/ are the same on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL/MariaDB compare strings case-insensitively by default; names are compared
# byte for byte on every backend, so "A" and "a" are two vertices everywhere.
Name = String(NAME_LENGTH).with_variant(
    mysql.VARCHAR(NAME_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
# TEXT is 64 KiB on MySQL: scripts and captured output need more.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes, stored as naive UTC with microseconds on every backend."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` in a form every backend stores: NUL (PostgreSQL refuses it) and lone surrogates
    (bytes that were not UTF-8, as Python keeps them: no driver can encode them) become U+FFFD."""
    if text.isascii():
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    return _UNSTORABLE.sub("\ufffd", text)


class SafeText(TypeDecorator):
    """Free text (output tails, errors, scripts, descriptions): written in its ``storable`` form,
    so no byte a script prints can make the database refuse the row."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect):
        return storable(value) if isinstance(value, str) else value


class SafeLongText(SafeText):
    impl = LongText
    cache_ok = True


class JSONText(TypeDecorator):
    """A JSON document kept as text (simplejson), identical on every backend."""

    impl = LongText
    cache_ok = True

    def process_bind_param(self, value: Any, dialect):
        return None if value is None else simplejson.dumps(value)  # key order kept: inputs show as declared

    def process_result_value(self, value: str | None, dialect):
        return None if value is None else simplejson.loads(value)


def _words(enum) -> str:
    return ", ".join(f"'{m.value}'" for m in enum)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
#: tables whose ids are shown or name files (runs' log directories): never reused, on SQLite too
_NEVER_REUSED = {**_TABLE_OPTIONS, "sqlite_autoincrement": True}


class Graph(Base):
    """One version of a graph: a name has versions 1, 2, 3..., each its own row with its own
    vertices and edges. Only the newest version may be unsealed (see ``service``)."""

    __tablename__ = "graph"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(f"status IN ({_words(GraphStatus)})", name="status"),
        _NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    description: Mapped[str] = mapped_column(SafeText, default="")
    status: Mapped[str] = mapped_column(String(16), default=GraphStatus.DRAFT.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Vertex(Base):
    __tablename__ = "vertex"
    __table_args__ = (
        UniqueConstraint("graph_id", "name"),
        # the target of the edges' composite foreign keys
        UniqueConstraint("graph_id", "id"),
        CheckConstraint("timeout IS NULL OR timeout > 0", name="timeout"),
        CheckConstraint("retries >= 0", name="retries"),
        _TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    graph_id: Mapped[int] = mapped_column(ForeignKey("graph.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Name)
    #: declaration order, kept for export and display
    position: Mapped[int] = mapped_column(Integer)
    script: Mapped[str] = mapped_column(SafeLongText)
    description: Mapped[str] = mapped_column(SafeText, default="")
    #: input schema: {input name: {type, required, default, ...}}
    inputs: Mapped[dict] = mapped_column(JSONText, default=dict)
    #: seconds; None means no limit
    timeout: Mapped[float | None] = mapped_column(Double)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    #: overrides the computed critical-path priority of its tracks
    priority: Mapped[float | None] = mapped_column(Double)
    #: the concurrency pool its tracks take a slot of while they run (``Pool.name``)
    pool: Mapped[str | None] = mapped_column(Name)
    #: seconds before the second attempt after a failure; each later wait is ``retry_backoff``
    #: times the one before
    retry_delay: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    retry_backoff: Mapped[float] = mapped_column(Double, default=1.0, server_default="1")
    #: the directory its script runs in (absolute, or relative to the worker's); None: the worker's
    cwd: Mapped[str | None] = mapped_column(String(CWD_LENGTH))
    #: variables added to its script's environment, name -> literal value; None: none
    env: Mapped[dict | None] = mapped_column(JSONText)


class Edge(Base):
    __tablename__ = "edge"
    __table_args__ = (
        # Both ends belong to the edge's own graph: the foreign keys include graph_id.
        ForeignKeyConstraint(["graph_id", "tail_id"], ["vertex.graph_id", "vertex.id"], ondelete="CASCADE",
                             name="fk_edge_tail_vertex"),
        ForeignKeyConstraint(["graph_id", "head_id"], ["vertex.graph_id", "vertex.id"], ondelete="CASCADE",
                             name="fk_edge_head_vertex"),
        UniqueConstraint("graph_id", "tail_id", "head_id"),
        Index(None, "graph_id", "head_id"),
        CheckConstraint("tail_id <> head_id", name="no_self_loop"),
        _TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    graph_id: Mapped[int] = mapped_column(Integer)
    tail_id: Mapped[int] = mapped_column(Integer)
    head_id: Mapped[int] = mapped_column(Integer)


class Pipeline(Base):
    """One run of a sealed graph."""

    __tablename__ = "pipeline"
    __table_args__ = (
        CheckConstraint(f"state IN ({_words(PipelineState)})", name="state"),
        Index(None, "graph_id", "created_at"),
        Index(None, "state"),
        Index(None, "schedule", "state"),
        Index(None, "backfill_id", "state"),
        Index("uq_pipeline_run_key", "run_key", unique=True),
        _NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    graph_id: Mapped[int] = mapped_column(ForeignKey("graph.id", ondelete="RESTRICT"))
    name: Mapped[str | None] = mapped_column(Name)
    state: Mapped[str] = mapped_column(String(16))
    #: the run's parameters as given, secrets masked
    params: Mapped[dict] = mapped_column(JSONText, default=dict)
    #: the worker that runs this pipeline alone (``run``, ``resume``); None: any worker
    owner: Mapped[str | None] = mapped_column(String(255))
    #: some input is a secret, which is never stored: only its owner can run it
    secret_inputs: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: who started it: an API token's name, ``cli:USER@HOST``, a schedule (None: before 0010)
    started_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: how it came to be: ``schedules.Trigger`` (None: before 0012, read as manual)
    trigger: Mapped[str | None] = mapped_column(String(16))
    #: the schedule that made it, by name, and the fire time it was made for
    schedule: Mapped[str | None] = mapped_column(Name)
    fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the backfill that made it
    backfill_id: Mapped[int | None] = mapped_column(ForeignKey("backfill.id", ondelete="SET NULL"))
    #: a key no other run has (a backfill's run: ``backfill:GRAPH:FIRE_AT``), or None
    run_key: Mapped[str | None] = mapped_column(String(255))


class Pool(Base):
    """A limit on how many tracks naming it run at once, across every worker and run. The
    running tracks are counted, not kept in a counter: nothing can leak a slot."""

    __tablename__ = "pool"
    __table_args__ = (
        CheckConstraint("size >= 0", name="size"),
        _TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Name, unique=True)
    #: tracks of this pool that may run at once; 0 holds them all pending
    size: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(SafeText, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Worker(Base):
    """A process that executes tracks: ``worker``, ``run``, ``resume``. Its heartbeat says it
    is alive; its tracks carry its name."""

    __tablename__ = "worker"
    __table_args__ = (_TABLE_OPTIONS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    #: seconds without a heartbeat after which its tracks are taken back
    lease: Mapped[float] = mapped_column(Double)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Track(Base):
    """One vertex of one run."""

    __tablename__ = "track"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "vertex_id"),
        CheckConstraint(f"state IN ({_words(TrackState)})", name="state"),
        CheckConstraint("attempt >= 0", name="attempt"),
        Index(None, "state", "priority"),
        Index(None, "vertex_id"),
        Index(None, "pipeline_id", "state"),
        Index(None, "worker"),
        Index(None, "vertex_id", "state"),
        Index(None, "pipeline_id", "changed_at"),
        _NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipeline.id", ondelete="CASCADE"))
    vertex_id: Mapped[int] = mapped_column(ForeignKey("vertex.id", ondelete="RESTRICT"))
    state: Mapped[str] = mapped_column(String(16))
    #: attempts started so far
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: retries + 1
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    #: predecessors that have not succeeded yet; the track is ready at 0
    waiting_on: Mapped[int] = mapped_column(Integer, default=0)
    #: larger runs first among ready tracks
    priority: Mapped[float] = mapped_column(Double, default=0.0)
    #: resolved inputs, secrets masked
    inputs: Mapped[dict] = mapped_column(JSONText, default=dict)
    #: the rendered script, secrets masked
    script: Mapped[str] = mapped_column(SafeLongText, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer)
    #: why the last attempt ended, when not by its exit code (timeout, lost lease, ...)
    error: Mapped[str | None] = mapped_column(SafeText)
    #: the worker holding the track while it runs
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: when its state (or attempt) last changed, by the writer's clock: what the API's event
    #: stream reads (None: not changed since before 0011)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the tail of the captured output, capped
    stdout: Mapped[str] = mapped_column(SafeLongText, default="")
    stderr: Mapped[str] = mapped_column(SafeLongText, default="")
    #: the full output, when it was streamed to a file
    log_path: Mapped[str | None] = mapped_column(String(1024))
    #: seconds the last attempt ran (the median of recent successes weighs the vertex)
    duration: Mapped[float | None] = mapped_column(Double)
    #: the vertex's pool when the run started
    pool: Mapped[str | None] = mapped_column(Name)
    #: a pending track waiting for its retry is not claimed before this time
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrackAttempt(Base):
    """One ended attempt of a track (the track's row keeps its last one, or the one that runs
    now): what a run's timeline draws, retries and lost leases included. Written in the
    transaction that records the attempt's end; deleted with its track."""

    __tablename__ = "attempt"
    __table_args__ = (
        CheckConstraint(f"outcome IN ({_words(AttemptOutcome)})", name="outcome"),
        CheckConstraint("attempt >= 1", name="attempt"),
        _TABLE_OPTIONS,
    )

    track_id: Mapped[int] = mapped_column(BigId, ForeignKey("track.id", ondelete="CASCADE"), primary_key=True,
                                          autoincrement=False)
    #: the track's attempt number (1, 2, ...)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: the worker that ran it
    worker: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when it ended: its process's end, or when its run was cancelled or its lease taken back
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    #: why it ended, when not by its exit code, cut short (``store.ATTEMPT_ERROR_LENGTH``)
    error: Mapped[str | None] = mapped_column(SafeText)


class Installation(Base):
    """This database's identity, whatever the URL that reaches it: one row (``slot`` is always
    1), made by the first process that uses the database (``store.create_installation``), not
    by the migration, so the DDL in ``sql/`` holds no random value. Process markers and log
    directories are named after ``id``."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("slot = 1", name="slot"), _TABLE_OPTIONS)

    #: the primary key admits one row: of two first users creating it at once, one wins
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: 32 random hex digits
    id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Token(Base):
    """An API token: a name, a role, and the SHA-256 of the token (the token itself is shown
    once, when it is made, and never stored). Revoking deletes the row."""

    __tablename__ = "token"
    __table_args__ = (CheckConstraint(f"role IN ({_words(Role)})", name="role"), _TABLE_OPTIONS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Name, unique=True)
    role: Mapped[str] = mapped_column(String(16))
    #: hex SHA-256 of the token: a request's token is found by its digest
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when a request last carried it (written at most once a minute)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Audit(Base):
    """Who did what: one row per state-changing call of the service (the CLI's, the API's),
    written in the call's own transaction. Never a secret value, never a token."""

    __tablename__ = "audit"
    __table_args__ = (_NEVER_REUSED,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: an API token's name, ``cli:USER@HOST``, ``python:USER@HOST``
    actor: Mapped[str] = mapped_column(String(255))
    #: what was done: ``graph.import``, ``run.start``, ``token.revoke``...
    action: Mapped[str] = mapped_column(String(64))
    #: what it was done to: a graph's, pool's or token's name, a run's id
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(SafeText, default="")


class Idempotency(Base):
    """An ``Idempotency-Key`` a caller sent with a run's start: the same key and body again
    within a day returns that run instead of starting another."""

    __tablename__ = "idempotency"
    __table_args__ = (Index(None, "pipeline_id"), _TABLE_OPTIONS)

    #: the caller (a token's name): keys of two callers never meet
    actor: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: hex SHA-256 of the request (graph and body)
    digest: Mapped[str] = mapped_column(String(64))
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipeline.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Schedule(Base):
    """When a graph runs by itself: a cron expression in a time zone, or an interval, with its
    parameters and policies. Runs use the graph's newest sealed version."""

    __tablename__ = "schedule"
    __table_args__ = (
        CheckConstraint(f"catchup IN ({_words(CatchUp)})", name="catchup"),
        CheckConstraint(f"overlap IN ({_words(Overlap)})", name="overlap"),
        CheckConstraint("(cron IS NULL) <> (every_seconds IS NULL)", name="cron_or_every"),
        CheckConstraint("max_catchup >= 1", name="max_catchup"),
        Index(None, "next_fire_at"),
        Index(None, "graph"),
        _TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Name, unique=True)
    #: the graph's name: a schedule outlives versions
    graph: Mapped[str] = mapped_column(Name)
    #: five fields, or None for an interval
    cron: Mapped[str | None] = mapped_column(String(255))
    every_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    #: input name (or VERTEX.name) -> value; strings may hold {fire_at}, {fire_date}, {fire_time}
    parameters: Mapped[dict] = mapped_column(JSONText, default=dict)
    catchup: Mapped[str] = mapped_column(String(8))
    max_catchup: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[str] = mapped_column(String(8))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the first fire time not decided yet (None: none is left before its end)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScheduleDecision(Base):
    """What a scheduler decided for one fire time of a schedule: one row per fire time, which
    the unique key enforces whichever scheduler decides."""

    __tablename__ = "schedule_decision"
    __table_args__ = (
        UniqueConstraint("schedule_id", "fire_at"),
        CheckConstraint(f"decision IN ({_words(Decision)})", name="decision"),
        Index(None, "pipeline_id"),
        _TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"))
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decision: Mapped[str] = mapped_column(String(16))
    pipeline_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(SafeText, default="")
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the scheduler that decided (its name: host:pid:random)
    scheduler: Mapped[str] = mapped_column(String(255))


class Backfill(Base):
    """Runs of a graph for the past fire times of a schedule or a cron expression: one per fire
    time in [from, to), at most ``max_active`` of them running at once (the rest queued)."""

    __tablename__ = "backfill"
    __table_args__ = (CheckConstraint("max_active >= 1", name="max_active"), _NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    graph: Mapped[str] = mapped_column(Name)
    schedule: Mapped[str | None] = mapped_column(Name)
    cron: Mapped[str | None] = mapped_column(String(255))
    every_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict] = mapped_column(JSONText, default=dict)
    from_at: Mapped[datetime] = mapped_column(UTCDateTime)
    to_at: Mapped[datetime] = mapped_column(UTCDateTime)
    max_active: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))


class WebSession(Base):
    """A signed-in page session: made when a token is given at ``/login``, ended by logout, by
    its expiry, or with its token (revoking a token ends its sessions). The database keeps the
    SHA-256 of the session's cookie, never the cookie."""

    __tablename__ = "web_session"
    __table_args__ = (Index(None, "token_id"), _TABLE_OPTIONS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: hex SHA-256 of the cookie's value
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("token.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
