"""Backfills: one run of a graph per fire time in [from, to) of a schedule or a cron
expression, oldest first, at most ``max_active`` running at once (the rest queued, started by
``promote_queued`` as earlier ones end). Each run carries the key ``backfill:GRAPH:FIRE_AT``,
which no other run may have: the same backfill again creates nothing it created before."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc

from pipeline_engine import actors, schedules, store, timetable
from pipeline_engine.db import Database
from pipeline_engine.errors import ConflictError, NotFoundError, ScheduleError
from pipeline_engine.schedules import ScheduleSpec, Trigger
from pipeline_engine.service._base import _audit
from pipeline_engine.service.runs import create_run
from pipeline_engine.service.schedules import _fillable

#: the most fire times one backfill takes
MAX_FIRES = 10_000


@dataclass(frozen=True)
class BackfillRun:
    """One fire time of a backfill: its run, and whether it was made now (or before)."""

    fire_at: datetime
    local: datetime
    run: int | None
    state: str | None
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {"fire_at": self.fire_at.isoformat(), "local": self.local.isoformat(), "run": self.run,
                "state": self.state, "created": self.created}


@dataclass(frozen=True)
class BackfillResult:
    id: int | None
    graph: str
    dry_run: bool
    runs: list[BackfillRun]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "graph": self.graph, "dry_run": self.dry_run, "runs": [r.to_dict() for r in self.runs]}


def run_key(graph: str, fire_at: datetime) -> str:
    return f"backfill:{graph}:{fire_at.isoformat()}"


def backfill(db: Database, graph: str, start: Any, end: Any, *, schedule: str | None = None,
             cron: str | None = None, timezone: str = "UTC", parameters: dict | None = None,
             max_active: int = 1, dry_run: bool = False) -> BackfillResult:
    """Make the runs of ``graph`` for the fire times in ``[start, end)`` of ``schedule`` (its
    expression, zone and parameters, ``parameters`` over them) or of ``cron`` in ``timezone``.
    With ``dry_run`` nothing is written: the answer says what would be made. Every check comes
    before anything is written; the runs are made in one transaction."""
    where = f"backfill of graph '{graph}'"
    if (schedule is None) == (cron is None):
        raise ScheduleError(f"{where}: give a schedule or a cron expression (one of them)")
    if isinstance(max_active, bool) or not isinstance(max_active, int) or not 1 <= max_active <= 1000:
        raise ScheduleError(f"{where}: max_active must be a whole number from 1 to 1000, got {max_active!r}")
    anchor = None
    with db.transaction(write=False) as s:
        if schedule is not None:
            row = store.find_schedule(s, schedule)
            if row is None:
                raise NotFoundError(f"no schedule '{schedule}'")
            if row.graph != graph:
                raise ScheduleError(f"{where}: schedule '{schedule}' runs graph '{row.graph}'")
            spec = schedules.spec_from(schedule, graph, cron=row.cron,
                                       every=timetable.format_every(timedelta(seconds=row.every_seconds))
                                       if row.every_seconds else None, timezone=row.timezone,
                                       parameters={**(row.parameters or {}), **(parameters or {})})
            anchor = row.start_at  # an interval keeps its schedule's phase
        else:
            spec = schedules.spec_from("backfill", graph, cron=cron, timezone=timezone, parameters=parameters or {})
    begin = schedules.instant_of(start, spec.timezone, f"{where}: from")
    finish = schedules.instant_of(end, spec.timezone, f"{where}: to")
    if begin is None or finish is None:
        raise ScheduleError(f"{where}: give both from and to")
    if finish <= begin:
        raise ScheduleError(f"{where}: to ({finish.isoformat()}) is not after from ({begin.isoformat()})")
    table = timetable.Timetable(spec.cron, spec.every, timetable.zone(spec.timezone), anchor or begin, None)
    fires = table.between(begin, finish, limit=MAX_FIRES + 1)
    if len(fires) > MAX_FIRES:
        raise ScheduleError(f"{where}: more than {MAX_FIRES} fire times between {begin.isoformat()} and"
                            f" {finish.isoformat()}: backfill a shorter period at a time")
    tz = timetable.zone(spec.timezone)
    made: BackfillResult
    try:
        with db.transaction(write=not dry_run) as s:
            _fillable(s, ScheduleSpec(name=schedule or "backfill", graph=graph, parameters=spec.parameters,
                                      timezone=spec.timezone), fires[0] if fires else begin)
            existing = store.runs_by_key(s, [run_key(graph, t) for t in fires])
            out, row, active = [], None, 0
            for t in fires:
                found = existing.get(run_key(graph, t))
                if found is not None or dry_run:
                    out.append(BackfillRun(t, t.astimezone(tz), *(found or (None, None)), False))
                    continue
                if row is None:
                    row = store.add_backfill(
                        s, graph=graph, schedule=schedule, cron=spec.cron,
                        every_seconds=int(spec.every.total_seconds()) if spec.every else None, timezone=spec.timezone,
                        parameters=spec.parameters, from_at=begin, to_at=finish, max_active=max_active,
                        created_by=actors.current())
                queued = active >= max_active
                run = create_run(s, graph, schedules.fill(spec.parameters, t, spec.timezone), detach=True,
                                 trigger=Trigger.BACKFILL, schedule=schedule, fire_at=t, queued=queued,
                                 backfill_id=row.id, run_key=run_key(graph, t))
                active += not queued
                out.append(BackfillRun(t, t.astimezone(tz), run.id, "queued" if queued else "running", True))
            if row is not None:
                _audit(s, "backfill", graph, f"{sum(r.created for r in out)} run(s) for {len(fires)} fire time(s)"
                                             f" from {begin.isoformat()} to {finish.isoformat()}")
            made = BackfillResult(row.id if row is not None else None, graph, dry_run, out)
    except sa_exc.IntegrityError:  # a concurrent backfill made one of these runs first: all of this goes
        raise ConflictError(f"{where}: another backfill of these fire times was being made; run it again (what"
                            " exists already is kept)") from None
    return made
