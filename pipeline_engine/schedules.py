"""Pure: what a scheduler decides for a schedule's due fire times — the words of its policies
and decisions, and catch-up after downtime, bounded whatever the backlog.

A fire time is *late* once ``grace`` has passed since it. A late fire time is *missed* unless the
catch-up policy takes it: ``none`` takes none (the next fire time comes on time), ``latest`` the
most recent, ``all`` the most recent ``max_catchup``, oldest first. Only the most recent
``MISSED_KEPT`` missed times are recorded one by one; the one before them tells how many earlier
ones there were, so that a year of downtime of an every-second schedule is one more row, not
thirty million."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline_engine import timetable
from pipeline_engine.errors import GraphError, ScheduleError
from pipeline_engine.spec import GRAPH_NAME, check_name
from pipeline_engine.states import Word

#: how late a fire time may be decided and still run (not missed), by default
GRACE = timedelta(seconds=60)
#: missed fire times recorded one by one (the earlier ones are counted in one more decision)
MISSED_KEPT = 100
#: how many due fire times one look at a schedule reads at most (the most recent of them)
DUE_READ = MISSED_KEPT + 1000


class CatchUp(Word):
    NONE = "none"
    LATEST = "latest"
    ALL = "all"


class Overlap(Word):
    """What a fire time does while the schedule's previous run is still running."""

    #: start another
    ALLOW = "allow"
    #: start none, and record which run was still going
    SKIP = "skip"
    #: start it once the previous one has ended, in order
    QUEUE = "queue"
    #: cancel the previous one, and start this one
    CANCEL = "cancel"


class Decision(Word):
    CREATED = "created"
    SKIPPED = "skipped"
    QUEUED = "queued"
    MISSED = "missed"
    REFUSED = "refused"


class Trigger(Word):
    """How a run came to be."""

    MANUAL = "manual"
    API = "api"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"


#: the most recent fire times ``all`` catches up, unless a schedule says otherwise
MAX_CATCHUP = 10
#: the largest ``max_catchup``
MAX_CATCHUP_LIMIT = 1000
#: what a fire time fills in a schedule's string parameters
FIRE_FIELDS = re.compile(r"\{(fire_at|fire_date|fire_time)\}")


#: the keys of a graph file's schedule
FILE_KEYS = ("name", "cron", "every", "timezone", "parameters", "catchup", "max_catchup", "overlap", "start", "end")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule as given (a graph file's ``schedules:`` entry, ``schedule add``, the API),
    checked: ``cron`` as five fields or ``every``; instants in UTC."""

    name: str
    graph: str
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    parameters: dict[str, Any] = field(default_factory=dict)
    catchup: CatchUp = CatchUp.LATEST
    max_catchup: int = MAX_CATCHUP
    overlap: Overlap = Overlap.SKIP
    #: None: when it is created
    start: datetime | None = None
    end: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The graph-file form: what ``spec_from`` reads back as this schedule."""
        out: dict[str, Any] = {"name": self.name}
        if self.cron is not None:
            out["cron"] = self.cron
        else:
            out["every"] = timetable.format_every(self.every)
        out.update(timezone=self.timezone, parameters=dict(self.parameters), catchup=str(self.catchup),
                   max_catchup=self.max_catchup, overlap=str(self.overlap))
        for key in ("start", "end"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).isoformat()
        return out

    def timetable(self, start: datetime) -> timetable.Timetable:
        return timetable.Timetable(self.cron, self.every, timetable.zone(self.timezone), self.start or start,
                                   self.end)


def _choice(enum, value: Any, where: str):
    try:
        return enum(value)
    except ValueError:
        raise ScheduleError(f"{where}: {value!r} is not one of {', '.join(str(m) for m in enum)}") from None


def instant_of(value: Any, tz: str, where: str) -> datetime | None:
    """An ISO 8601 date-time (or a datetime) as a UTC instant; one without an offset is read in
    the zone ``tz``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleError(f"{where}: {value!r} is not an ISO 8601 date-time (e.g. 2026-12-01T02:30:00+01:00)"
                                ) from None
    if not isinstance(value, datetime):
        raise ScheduleError(f"{where}: {value!r} is not a date-time")
    if value.tzinfo is None:
        value = timetable.instant(value, timetable.zone(tz))
    return value.astimezone(timezone.utc)


def spec_from(name: Any, graph: Any, *, cron: Any = None, every: Any = None, timezone: Any = "UTC",
              parameters: Any = None, catchup: Any = CatchUp.LATEST, max_catchup: Any = MAX_CATCHUP,
              overlap: Any = Overlap.SKIP, start: Any = None, end: Any = None) -> ScheduleSpec:
    """Check a schedule's fields; a ScheduleError names the schedule and the field at fault."""
    try:
        check_name("schedule", name, GRAPH_NAME)
        check_name("graph", graph, GRAPH_NAME)
    except GraphError as exc:
        raise ScheduleError(str(exc)) from None
    where = f"schedule '{name}'"
    if (cron is None) == (every is None):
        raise ScheduleError(f"{where}: give cron or every (one of them)")
    fields = timetable.parse_cron(cron, f"{where}: cron") if cron is not None else None
    interval = timetable.parse_every(every, f"{where}: every") if every is not None else None
    zone = timezone if timezone is not None else "UTC"
    timetable.zone(zone, f"{where}: timezone")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
        raise ScheduleError(f"{where}: parameters is a mapping of input names to values")
    for key, value in parameters.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ScheduleError(f"{where}: parameter '{key}': a number, a boolean or text, got {value!r}")
    if isinstance(max_catchup, bool) or not isinstance(max_catchup, int) \
            or not 1 <= max_catchup <= MAX_CATCHUP_LIMIT:
        raise ScheduleError(f"{where}: max_catchup must be a whole number from 1 to {MAX_CATCHUP_LIMIT},"
                            f" got {max_catchup!r}")
    begin, finish = instant_of(start, zone, f"{where}: start"), instant_of(end, zone, f"{where}: end")
    if begin is not None and finish is not None and finish <= begin:
        raise ScheduleError(f"{where}: end ({finish.isoformat()}) is not after start ({begin.isoformat()})")
    return ScheduleSpec(name=name, graph=graph, cron=fields, every=interval, timezone=zone,
                        parameters=dict(parameters), catchup=_choice(CatchUp, catchup, f"{where}: catchup"),
                        max_catchup=max_catchup, overlap=_choice(Overlap, overlap, f"{where}: overlap"),
                        start=begin, end=finish)


def fill(parameters: Mapping[str, Any], fire_at: datetime, tz: str) -> dict[str, Any]:
    """A schedule's parameters for one fire time: ``{fire_at}`` (ISO 8601, UTC), ``{fire_date}``
    (YYYY-MM-DD) and ``{fire_time}`` (HH:MM) in the schedule's zone, filled in string values."""
    local = fire_at.astimezone(timetable.zone(tz))
    values = {"fire_at": fire_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
              "fire_date": local.strftime("%Y-%m-%d"), "fire_time": local.strftime("%H:%M")}
    return {k: FIRE_FIELDS.sub(lambda m: values[m.group(1)], v) if isinstance(v, str) else v
            for k, v in parameters.items()}


@dataclass(frozen=True)
class Planned:
    """A fire time to decide: to run (``missed`` False), or missed with the reason."""

    fire_at: datetime
    missed: bool
    reason: str = ""


def plan(due: list[datetime], now: datetime, catchup: CatchUp, max_catchup: int, grace: timedelta = GRACE,
         earlier: int = 0) -> list[Planned]:
    """What to do with ``due`` (fire times at or before ``now``, oldest first, none decided
    yet; ``earlier`` more before them were not even read): the on-time ones run, the late ones
    as the catch-up policy says."""
    late = [t for t in due if now - t > grace]
    on_time = [t for t in due if now - t <= grace]
    if catchup == CatchUp.NONE:
        taken: list[datetime] = []
    elif catchup == CatchUp.LATEST:
        taken = late[-1:]
    else:
        taken = late[-max_catchup:]
    missed = [t for t in late if t not in set(taken)]
    out = []
    kept = missed[-MISSED_KEPT:]
    uncounted = len(missed) - len(kept) + earlier
    for i, t in enumerate(kept):
        why = f"late by {_age(now - t)} (more than the grace of {_age(grace)}); catch-up: {catchup}"
        if catchup == CatchUp.ALL:
            why += f", the most recent {max_catchup} only"
        if i == 0 and uncounted:
            why += f"; and {uncounted} earlier fire time(s), not recorded one by one"
        out.append(Planned(t, True, why))
    out.extend(Planned(t, False) for t in [*taken, *on_time])
    return sorted(out, key=lambda p: p.fire_at)


def _age(delta: timedelta) -> str:
    """A duration in its largest whole unit: 45s, 12m, 5h, 3d."""
    seconds = int(delta.total_seconds())
    for unit, size, below in (("s", 1, 120), ("m", 60, 7200), ("h", 3600, 172800)):
        if seconds < below:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"
