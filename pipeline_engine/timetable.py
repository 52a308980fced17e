"""Pure: when a schedule fires. A five-field cron expression (or ``@hourly``...) read in an IANA
time zone, or a fixed interval in real time; the fire times as UTC instants.

The rule for clocks that change, declared and tested against a minute-by-minute oracle over the
zones' real transitions:

- a local time that does not exist (clocks jump forward) fires at the first instant after the
  gap, once however many of its times fell in it (``30 2 * * *`` on the night Berlin skips 02:00
  to 03:00 fires at 03:00);
- a local time that occurs twice (clocks fall back) fires once, at its first occurrence (the
  repeated hour's times do not fire again);
- an ``every`` interval is real time: ``start + k × interval``, whatever the clocks say.

Cron expressions are parsed and walked by ``cronsim`` (Debian cron's fields and extensions: ``L``,
``W``, ``#``) over wall-clock times without a zone; this module alone maps them to instants."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pipeline_engine.errors import ScheduleError

UTC = timezone.utc

#: the named expressions, as five fields
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}

_EVERY = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the longest interval an ``every`` schedule takes
MAX_EVERY = timedelta(days=3660)


def parse_cron(expression: str, where: str = "cron") -> str:
    """``expression`` as five fields (a macro expanded), or a ScheduleError naming ``where``."""
    if not isinstance(expression, str):
        raise ScheduleError(f"{where}: a cron expression is text, got {expression!r}")
    text = " ".join(expression.split())
    fields = MACROS.get(text.lower(), text)
    if text.startswith("@") and text.lower() not in MACROS:
        raise ScheduleError(f"{where}: {expression!r} is not one of {', '.join(sorted(MACROS))}")
    if len(fields.split()) != 5:
        raise ScheduleError(f"{where}: {expression!r} has {len(fields.split())} fields; a cron expression has 5"
                            " (minute hour day-of-month month day-of-week) or is one of " + ", ".join(sorted(MACROS)))
    try:
        CronSim(fields, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ScheduleError(f"{where}: {expression!r}: {str(exc).lower()}") from None
    return fields


def parse_every(text: str, where: str = "every") -> timedelta:
    """``15m``, ``1h30m``, ``90s``, ``1d`` (units s, m, h, d) as a positive interval."""
    if not isinstance(text, str) or not text or _EVERY.sub("", text.strip()) or not _EVERY.findall(text.strip()):
        raise ScheduleError(f"{where}: {text!r} is not a duration: a number and a unit (s, m, h, d), e.g. 30s,"
                            " 15m, 1h30m")
    total = timedelta(seconds=sum(int(n) * _UNIT[unit] for n, unit in _EVERY.findall(text.strip())))
    if total <= timedelta(0):
        raise ScheduleError(f"{where}: {text!r} is no time at all: an interval must be at least 1s")
    if total > MAX_EVERY:
        raise ScheduleError(f"{where}: {text!r} is longer than {MAX_EVERY.days} days")
    return total


def format_every(interval: timedelta) -> str:
    """The shortest text ``parse_every`` reads back as ``interval``."""
    seconds, out = int(interval.total_seconds()), []
    for unit in "dhms":
        n, seconds = divmod(seconds, _UNIT[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


def zone(name: str, where: str = "timezone") -> ZoneInfo:
    """The IANA zone ``name`` (``UTC``, ``Europe/Berlin``), or a ScheduleError naming ``where``."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise ScheduleError(f"{where}: {name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"{where}: unknown time zone {name!r} (an IANA name, e.g. UTC, Europe/Berlin)") from None


def instant(local: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a wall-clock time ``local`` (no zone) fires at in ``tz``, by the rule
    above: its first occurrence, or the end of the gap it falls in."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == local:
        return first
    # in a gap: fold=0 reads it with the offset from before the jump, fold=1 with the one after;
    # the jump itself lies between the two readings
    low, high = local.replace(tzinfo=tz, fold=1).astimezone(UTC), first
    after = first.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


@dataclass(frozen=True)
class Timetable:
    """When a schedule fires: ``cron`` (five fields) in ``tz``, or every ``every``; from
    ``start`` (inclusive) until ``end`` (exclusive), both UTC instants."""

    cron: str | None
    every: timedelta | None
    tz: ZoneInfo
    start: datetime
    end: datetime | None = None

    def times(self, after: datetime) -> Iterator[datetime]:
        """The fire times strictly after ``after``, in order, as UTC instants."""
        after = after.astimezone(UTC)
        if self.start > after:
            after = self.start - timedelta(microseconds=1)
        if self.every is not None:
            k = (after - self.start) // self.every + 1
            moment = self.start + k * self.every
            while self.end is None or moment < self.end:
                yield moment
                moment += self.every
            return
        # the wall clock a second before ``after``: no wall-clock time before it fires after
        # ``after`` (instants grow with wall-clock times)
        local = (after - timedelta(seconds=1)).astimezone(self.tz).replace(tzinfo=None)
        last = None
        for wall in CronSim(self.cron, local):  # ends when nothing matches within 50 years (30 February)
            moment = instant(wall, self.tz)
            if moment <= after or moment == last:
                continue
            if self.end is not None and moment >= self.end:
                return
            last = moment
            yield moment

    def latest(self, since: datetime, until: datetime, limit: int) -> tuple[list[datetime], bool]:
        """The most recent ``limit`` fire times in ``[since, until]``, oldest first, and whether
        there are more before them: what a scheduler reads after downtime, however long, without
        walking every fire time since."""
        since, until = max(since.astimezone(UTC), self.start), until.astimezone(UTC)
        if self.end is not None and until >= self.end:
            until = self.end - timedelta(microseconds=1)
        if until < since:
            return [], False
        if self.every is not None:
            first = -((self.start - since) // self.every)  # the first k with start + k × every >= since
            last = (until - self.start) // self.every
            ks = range(max(first, last - limit + 1), last + 1)
            return [self.start + k * self.every for k in ks], last - first + 1 > limit
        # walking back from a wall-clock time later than any that fires by ``until`` (clocks
        # have not fallen back by more than 3 hours)
        wall = (until + timedelta(hours=3)).astimezone(self.tz).replace(tzinfo=None)
        out: list[datetime] = []
        for local in CronSim(self.cron, wall, reverse=True):
            moment = instant(local, self.tz)
            if moment > until or out and moment == out[-1]:
                continue
            if moment < since:
                return out[::-1], False
            if len(out) == limit:
                return out[::-1], True
            out.append(moment)
        return out[::-1], False

    def next(self, after: datetime, count: int = 1) -> list[datetime]:
        """The first ``count`` fire times after ``after``."""
        out = []
        for moment in self.times(after):
            if len(out) == count:
                break
            out.append(moment)
        return out

    def between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        """The fire times in ``[start, end)``, oldest first (at most ``limit``)."""
        out = []
        for moment in self.times(start - timedelta(microseconds=1)):
            if moment >= end or limit is not None and len(out) == limit:
                break
            out.append(moment)
        return out
