"""Schedules: define, list, pause and resume them; when they fire next; what was decided for
each fire time; and a scheduler's look, which takes every decision due now, each exactly once
whichever scheduler takes it (the decision's unique key, written in the transaction that
creates the run)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from pipeline_engine import actors, inputtypes, lifecycle, schedules, store, timetable
from pipeline_engine.db import Database
from pipeline_engine.errors import (AlreadyExistsError, NotFoundError, ParameterError, PipelineEngineError,
                                    ScheduleError)
from pipeline_engine.models import Schedule
from pipeline_engine.schedules import Decision, Overlap, ScheduleSpec, Trigger
from pipeline_engine.service._base import _audit, _write
from pipeline_engine.service.runs import create_run
from pipeline_engine.states import GraphStatus, PipelineState
from pipeline_engine.views import DecisionInfo, FireTime, ScheduleInfo

log = logging.getLogger("pipeline_engine.scheduler")

#: schedules one look decides at most (the most overdue first; the next look takes the rest)
LOOK = 1000


def _info(row: Schedule) -> ScheduleInfo:
    return ScheduleInfo(name=row.name, graph=row.graph, cron=row.cron,
                        every=timetable.format_every(timedelta(seconds=row.every_seconds))
                        if row.every_seconds is not None else None,
                        timezone=row.timezone, parameters=dict(row.parameters or {}), catchup=row.catchup,
                        max_catchup=row.max_catchup, overlap=row.overlap, start=row.start_at, end=row.end_at,
                        paused=row.paused, next_fire_at=row.next_fire_at, last_fire_at=row.last_fire_at)


def _timetable(row: Schedule) -> timetable.Timetable:
    return timetable.Timetable(row.cron, timedelta(seconds=row.every_seconds) if row.every_seconds else None,
                               timetable.zone(row.timezone), row.start_at, row.end_at)


def _find(s: Session, name: str, *, lock: bool = False) -> Schedule:
    row = store.find_schedule(s, name, lock=lock)
    if row is None:
        raise NotFoundError(f"no schedule '{name}'")
    return row


def _fillable(s: Session, spec: ScheduleSpec, sample: datetime) -> None:
    """Refuse a schedule whose graph's inputs it cannot fill: a required input without a value,
    a value its type refuses, any secret input (a scheduler holds no secrets). Checked against
    the graph's newest sealed version, or its newest version while none is sealed."""
    versions = store.graph_versions(s, spec.graph)
    if not versions:
        raise NotFoundError(f"schedule '{spec.name}': no graph '{spec.graph}'")
    sealed = [g for g in versions if g.status == GraphStatus.SEALED]
    graph = (sealed or versions)[-1]
    schemas = {v.name: inputtypes.parse_schema(v.name, v.inputs) for v in store.vertices(s, graph.id)}
    secrets = sorted({n for schema in schemas.values() for n, i in schema.items() if i.secret})
    if secrets:
        raise ScheduleError(f"schedule '{spec.name}': graph '{spec.graph}' has secret inputs ({', '.join(secrets)}),"
                            " which are never stored: a schedule cannot give them")
    try:
        inputtypes.resolve(schemas, schedules.fill(spec.parameters, sample, spec.timezone))
    except ParameterError as exc:
        raise ScheduleError(f"schedule '{spec.name}': the inputs of graph '{spec.graph}' version {graph.version}"
                            f" cannot be filled: {exc}") from None


def _fields(spec: ScheduleSpec, start: datetime, anchor: datetime) -> dict:
    """A schedule's row from ``spec``: its fire times counted from ``start``, the first one to
    decide at or after ``anchor``."""
    first = spec.timetable(start).next(anchor - timedelta(microseconds=1))
    return {"graph": spec.graph, "cron": spec.cron,
            "every_seconds": int(spec.every.total_seconds()) if spec.every is not None else None,
            "timezone": spec.timezone, "parameters": spec.parameters, "catchup": str(spec.catchup),
            "max_catchup": spec.max_catchup, "overlap": str(spec.overlap), "start_at": start, "end_at": spec.end,
            "next_fire_at": first[0] if first else None}


def add_schedule(db: Database, spec: ScheduleSpec) -> ScheduleInfo:
    """Create a schedule (its name must be new). Its first fire time is the first at or after
    its start (default: now); a start in the past makes the fire times since then due, for the
    catch-up policy to decide."""
    with _write(db) as s:
        if store.find_schedule(s, spec.name) is not None:
            raise AlreadyExistsError(f"schedule '{spec.name}' exists: change it with the graph file, or delete it"
                                     " first")
        start = spec.start or store.now().replace(microsecond=0)
        _fillable(s, spec, start)
        row = store.add_schedule(s, name=spec.name, paused=False, **_fields(spec, start, start))
        _audit(s, "schedule.add", spec.name, f"graph '{spec.graph}'")
        return _info(row)


def put_schedule(s: Session, spec: ScheduleSpec) -> str:
    """Create or update a schedule inside the caller's transaction (a graph file's import);
    returns what was done, in words. An update keeps the schedule's history and its pause; its
    next fire time is computed again from now."""
    now = store.now().replace(microsecond=0)
    row = store.find_schedule(s, spec.name, lock=True)
    start = spec.start or (row.start_at if row is not None else now)
    _fillable(s, spec, start)
    # a new schedule's first fire time is at its start; a changed one's the first from now
    # (or from a start given anew: the fire times since then that were not decided are due)
    moved = spec.start is not None and (row is None or spec.start != row.start_at)
    fields = _fields(spec, start, spec.start if moved else now if row is not None else start)
    if row is None:
        store.add_schedule(s, name=spec.name, paused=False, **fields)
        return f"schedule '{spec.name}' created"
    if row.graph != spec.graph:
        raise ScheduleError(f"schedule '{spec.name}' belongs to graph '{row.graph}', not '{spec.graph}'")
    if not moved and (row.cron, row.every_seconds, row.timezone) == \
            (fields["cron"], fields["every_seconds"], spec.timezone):
        fields["next_fire_at"] = row.next_fire_at  # the same times: nothing undecided is passed over
    if all(getattr(row, key) == value for key, value in fields.items()):
        return f"schedule '{spec.name}' unchanged"
    store.update_schedule(s, row, **fields)
    return f"schedule '{spec.name}' updated"


def set_schedule(db: Database, spec: ScheduleSpec) -> tuple[ScheduleInfo, bool]:
    """Create a schedule or change it (``PUT``): (the schedule, whether it was created)."""
    with _write(db) as s:
        note = put_schedule(s, spec)
        if not note.endswith(" unchanged"):
            _audit(s, "schedule.set", spec.name, note)
        return _info(_find(s, spec.name)), note.endswith(" created")


def schedule_detail(db: Database, name: str, count: int = 5, history: int = 5) -> dict:
    """A schedule with its next ``count`` fire times and last ``history`` decisions, in the
    JSON that ``schedule show --json`` and the API give."""
    info = show_schedule(db, name)
    return {**info.to_dict(), "next": [f.to_dict() for f in next_fire_times(db, name, count)],
            "history": [d.to_dict() for d in schedule_history(db, name, history)]}


def schedule_specs(db: Database, graph: str) -> list[ScheduleSpec]:
    """A graph's schedules as its graph file gives them (``graph export``)."""
    with db.transaction(write=False) as s:
        return [ScheduleSpec(name=r.name, graph=r.graph, cron=r.cron,
                             every=timedelta(seconds=r.every_seconds) if r.every_seconds is not None else None,
                             timezone=r.timezone, parameters=dict(r.parameters or {}),
                             catchup=schedules.CatchUp(r.catchup), max_catchup=r.max_catchup,
                             overlap=Overlap(r.overlap), start=r.start_at, end=r.end_at)
                for r in store.list_schedules(s, graph)]


def list_schedules(db: Database, graph: str | None = None) -> list[ScheduleInfo]:
    with db.transaction(write=False) as s:
        return [_info(r) for r in store.list_schedules(s, graph)]


def show_schedule(db: Database, name: str) -> ScheduleInfo:
    with db.transaction(write=False) as s:
        return _info(_find(s, name))


def next_fire_times(db: Database, name: str, count: int = 5, after: datetime | None = None) -> list[FireTime]:
    """The schedule's next ``count`` fire times after ``after`` (default now), in its zone and
    in UTC: what it will do, clock changes included, before it does it."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
        raise ScheduleError(f"count must be a whole number from 1 to 10000, got {count!r}")
    with db.transaction(write=False) as s:
        row = _find(s, name)
    tz = timetable.zone(row.timezone)
    return [FireTime(local=t.astimezone(tz), utc=t) for t in _timetable(row).next(after or store.now(), count)]


def pause_schedule(db: Database, name: str) -> ScheduleInfo:
    """Stop deciding its fire times until it is resumed."""
    with _write(db) as s:
        row = _find(s, name, lock=True)
        if not row.paused:
            store.update_schedule(s, row, paused=True)
            _audit(s, "schedule.pause", name)
        return _info(row)


def resume_schedule(db: Database, name: str) -> ScheduleInfo:
    """Decide its fire times again, from the first one after now: the times it was paused
    through are not caught up."""
    with _write(db) as s:
        row = _find(s, name, lock=True)
        if row.paused:
            following = _timetable(row).next(store.now())
            store.update_schedule(s, row, paused=False, next_fire_at=following[0] if following else None)
            _audit(s, "schedule.resume", name)
        return _info(row)


def delete_schedule(db: Database, name: str) -> None:
    """Delete a schedule and its history (the runs it made stay)."""
    with _write(db) as s:
        store.delete_schedule(s, _find(s, name, lock=True))
        _audit(s, "schedule.delete", name)


def schedule_history(db: Database, name: str, limit: int | None = 100) -> list[DecisionInfo]:
    """Every decision taken for the schedule's fire times, newest fire time first."""
    with db.transaction(write=False) as s:
        row = _find(s, name)
        return [_decision(name, d) for d in store.schedule_history(s, row.id, limit)]


def _decision(name: str, d) -> DecisionInfo:
    return DecisionInfo(schedule=name, fire_at=d.fire_at, decision=d.decision, run=d.pipeline_id, reason=d.reason,
                        decided_at=d.decided_at, scheduler=d.scheduler)


# --- the scheduler's look ------------------------------------------------------------------------

def next_due(db: Database) -> datetime | None:
    """The soonest fire time any schedule not paused has to decide."""
    with db.transaction(write=False) as s:
        return store.next_due(s)


def decide_due(db: Database, *, scheduler: str, now: datetime | None = None,
               grace: timedelta = schedules.GRACE) -> list[DecisionInfo]:
    """Take every decision due at ``now`` (default: the database host's clock as this process
    reads it): for each schedule whose next fire time has come, in one transaction of its own,
    decide each due fire time (created, skipped, missed, refused...), create the runs, and
    advance the schedule. A fire time another scheduler decided first is not decided again:
    its schedule's row is locked while it is decided (SQLite: the one writer), and should two
    ever meet, the decision's unique key makes the second transaction fail whole."""
    now = now or store.now()
    with db.transaction(write=False) as s:
        due = store.due_schedules(s, now, LOOK)
    out: list[DecisionInfo] = []
    for schedule_id in due:
        try:
            with db.transaction(write=True) as s:
                out.extend(_decide(s, schedule_id, now, grace, scheduler))
        except sa_exc.IntegrityError:  # another scheduler decided these fire times first: its decisions stand
            log.info("%s: schedule %s was decided by another scheduler meanwhile", scheduler, schedule_id)
    return out


def _decide(s: Session, schedule_id: int, now: datetime, grace: timedelta, scheduler: str) -> list[DecisionInfo]:
    row = store.get_schedule_by_id(s, schedule_id, lock=True)
    if row is None or row.paused or row.next_fire_at is None or row.next_fire_at > now:
        return []  # deleted, paused, or decided meanwhile
    table = _timetable(row)
    due, more = table.latest(row.next_fire_at, now, schedules.DUE_READ)
    if due:  # a start set back again: the fire times already decided stay decided
        decided = store.decided_times(s, row.id, due[0], due[-1])
        due = [t for t in due if t not in decided]
    planned = schedules.plan(due, now, schedules.CatchUp(row.catchup), row.max_catchup, grace,
                             earlier=1 if more else 0)
    out = []
    for p in planned:
        if p.missed:
            decision, run, reason = Decision.MISSED, None, p.reason
        else:
            decision, run, reason = _fire(s, row, p.fire_at)
        store.add_decision(s, row.id, p.fire_at, str(decision), pipeline_id=run, reason=reason, scheduler=scheduler,
                           at=now)
        out.append(DecisionInfo(schedule=row.name, fire_at=p.fire_at, decision=str(decision), run=run,
                                reason=reason, decided_at=now, scheduler=scheduler))
    following = table.next(now)
    store.update_schedule(s, row, next_fire_at=following[0] if following else None,
                          last_fire_at=due[-1] if due else row.last_fire_at)
    return out


def _fire(s: Session, row: Schedule, fire_at: datetime) -> tuple[Decision, int | None, str]:
    """One fire time that is to run: the overlap policy, then the run (or why there is none)."""
    running = store.runs_of_schedule(s, row.name, PipelineState.RUNNING)
    waiting = store.runs_of_schedule(s, row.name, PipelineState.QUEUED)
    overlap = Overlap(row.overlap)
    if running and overlap == Overlap.SKIP:
        return Decision.SKIPPED, None, f"run {running[-1]} of this schedule was still running (overlap: skip)"
    queued = overlap == Overlap.QUEUE and bool(running or waiting)
    reason = f"behind run {(waiting or running)[-1]} of this schedule (overlap: queue)" if queued else ""
    if running and overlap == Overlap.CANCEL:
        for run_id in running:
            lifecycle.cancel(s, run_id)
        reason = f"cancelled run(s) {', '.join(map(str, running))} of this schedule, still running (overlap: cancel)"
    try:
        with s.begin_nested(), actors.acting_as(f"schedule:{row.name}"):  # a refused run writes nothing
            run = create_run(s, row.graph, schedules.fill(row.parameters or {}, fire_at, row.timezone), detach=True,
                             trigger=Trigger.SCHEDULE, schedule=row.name, fire_at=fire_at, queued=queued)
    except PipelineEngineError as exc:
        return Decision.REFUSED, None, str(exc)
    return (Decision.QUEUED if queued else Decision.CREATED), run.id, reason


def promote_queued(db: Database) -> list[int]:
    """Start the queued runs whose turn has come, oldest fire time first: a schedule's when it
    has no run running, a backfill's while fewer than its ``max_active`` run. Returns the runs
    started. Each schedule's and backfill's in a transaction of its own, its row locked (two
    schedulers never start one run twice: the start is a compare-and-set too)."""
    with db.transaction(write=False) as s:
        names, backfills = store.queued_owners(s)
    started: list[int] = []
    for name in names:
        with db.transaction(write=True) as s:
            store.find_schedule(s, name, lock=True)  # one promoter at a time (a deleted one's runs still take turns)
            if not store.runs_of_schedule(s, name, PipelineState.RUNNING):
                waiting = store.runs_of_schedule(s, name, PipelineState.QUEUED)
                if waiting and store.start_queued(s, waiting[0]):
                    started.append(waiting[0])
    for backfill_id in backfills:
        with db.transaction(write=True) as s:
            row = store.get_backfill(s, backfill_id, lock=True)
            if row is None:
                continue
            room = row.max_active - len(store.runs_of_backfill(s, backfill_id, PipelineState.RUNNING))
            if room > 0:
                for run_id in store.runs_of_backfill(s, backfill_id, PipelineState.QUEUED, limit=room):
                    if store.start_queued(s, run_id):
                        started.append(run_id)
    return started
