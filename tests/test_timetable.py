"""When schedules fire: cron and intervals, in time zones, across clock changes. The rule is
checked against an oracle that knows no cron library and no fold: every minute of real time
around each transition of every IANA zone between 2020 and 2040, read through zoneinfo."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

import pytest

from pipeline_engine.errors import ScheduleError
from pipeline_engine.timetable import Timetable, format_every, instant, parse_cron, parse_every, zone

UTC = timezone.utc
MINUTE = timedelta(minutes=1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def table(cron=None, tz="UTC", every=None, start=EPOCH, end=None) -> Timetable:
    return Timetable(parse_cron(cron) if cron else None, parse_every(every) if every else None, zone(tz), start, end)


def local(moments, tz) -> list[str]:
    return [m.astimezone(ZoneInfo(tz)).isoformat() for m in moments]


# --- the rule, as users read it ------------------------------------------------------------------

def test_a_nightly_time_the_clocks_skip_fires_once_at_the_end_of_the_gap():
    # Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST
    got = table("30 2 * * *", "Europe/Berlin").next(utc(2026, 3, 27, 12), 3)
    assert local(got, "Europe/Berlin") == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00",
                                           "2026-03-30T02:30:00+02:00"]


def test_every_quarter_hour_in_the_skipped_hour_is_one_fire_after_it():
    got = table("*/15 * * * *", "Europe/Berlin").next(utc(2026, 3, 29, 0, 30), 5)
    assert local(got, "Europe/Berlin") == ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00",
                                           "2026-03-29T03:15:00+02:00", "2026-03-29T03:30:00+02:00",
                                           "2026-03-29T03:45:00+02:00"]


def test_a_time_the_clocks_repeat_fires_once_at_its_first_occurrence():
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    got = table("30 2 * * *", "Europe/Berlin").next(utc(2026, 10, 24, 12), 2)
    assert local(got, "Europe/Berlin") == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    hourly = table("0 * * * *", "Europe/Berlin").next(utc(2026, 10, 24, 23, 30), 4)
    assert local(hourly, "Europe/Berlin") == ["2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00",
                                              "2026-10-25T04:00:00+01:00", "2026-10-25T05:00:00+01:00"]
    # asked from inside the repeated hour, the times of its first pass are behind
    assert local(table("45 2 * * *", "Europe/Berlin").next(utc(2026, 10, 25, 1, 10)), "Europe/Berlin") == \
        ["2026-10-26T02:45:00+01:00"]


def test_an_interval_is_real_time_whatever_the_clocks_do():
    start = utc(2026, 3, 29, 0, 0)
    got = table(every="30m", tz="Europe/Berlin", start=start).next(start - MINUTE, 4)
    assert [m - start for m in got] == [timedelta(minutes=30 * k) for k in range(4)]
    assert local(got, "Europe/Berlin")[2:] == ["2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]


def test_start_and_end_bound_the_fire_times():
    t = table("0 12 * * *", start=utc(2026, 1, 10), end=utc(2026, 1, 13))
    assert t.next(utc(2025, 1, 1), 5) == [utc(2026, 1, 10, 12), utc(2026, 1, 11, 12), utc(2026, 1, 12, 12)]
    assert t.between(utc(2026, 1, 11, 12), utc(2026, 2, 1)) == [utc(2026, 1, 11, 12), utc(2026, 1, 12, 12)]
    assert t.between(utc(2026, 1, 1), utc(2026, 2, 1), limit=1) == [utc(2026, 1, 10, 12)]
    e = table(every="1h", start=utc(2026, 1, 1, 0, 20))
    assert e.next(utc(2026, 1, 1, 3, 20), 2) == [utc(2026, 1, 1, 4, 20), utc(2026, 1, 1, 5, 20)]  # strictly after
    with pytest.raises(ScheduleError, match="bad day-of-month"):  # 30 February never comes
        parse_cron("0 0 30 2 *")


@pytest.mark.parametrize("cron, every", [("*/15 * * * *", None), ("30 2 * * *", None), (None, "15m"), (None, "7s")])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Australia/Lord_Howe"])
def test_the_latest_fire_times_are_the_forward_ones_however_far_back(cron, every, tz):
    t = table(cron, tz, every, start=utc(2026, 3, 1, 0, 7))
    since, until = utc(2026, 3, 27), utc(2026, 4, 6)  # Berlin and Lord Howe change clocks in between
    forward = t.between(since, until + timedelta(microseconds=1))
    assert t.latest(since, until, 10) == (forward[-10:], len(forward) > 10)
    assert t.latest(since, until, len(forward)) == (forward, False)
    assert t.latest(utc(2025, 1, 1), utc(2026, 2, 1), 5) == ([], False)  # before its start
    assert t.latest(forward[3], forward[3], 5) == ([forward[3]], False)  # both ends count


@pytest.mark.parametrize("name, fields", [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"),
                                          ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *")])
def test_named_expressions(name, fields):
    assert parse_cron(name) == fields


@pytest.mark.parametrize("expression, says", [
    ("61 * * * *", "bad minute"), ("* * * *", "has 4 fields"), ("@reboot", "is not one of"), ("", "has 0 fields"),
    ("0 25 * * *", "bad hour"), (5, "is text")])
def test_a_bad_cron_expression_is_refused_naming_it(expression, says):
    with pytest.raises(ScheduleError) as exc:
        parse_cron(expression, "schedule 'nightly': cron")
    assert str(exc.value).startswith("schedule 'nightly': cron: ") and says in str(exc.value)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("1h30m", 5400), ("1d", 86400), ("2h", 7200)])
def test_intervals(text, seconds):
    assert parse_every(text) == timedelta(seconds=seconds) and format_every(parse_every(text)) == text


@pytest.mark.parametrize("text", ["0s", "", "15", "m", "1w", "-5m", "1.5h", "5m 3x", 15, "99999d"])
def test_a_bad_interval_is_refused(text):
    with pytest.raises(ScheduleError, match="every: "):
        parse_every(text)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "utc+2"])
def test_an_unknown_zone_is_refused(name):
    with pytest.raises(ScheduleError, match="timezone: "):
        zone(name)


# --- the oracle ----------------------------------------------------------------------------------

def _matches(field: str, value: int, low: int) -> bool:
    """Does one cron field (numbers, ranges, steps, lists, *) take ``value``? (No library.)"""
    for part in field.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            first, last = low, 10**6
        elif "-" in rng:
            first, last = map(int, rng.split("-"))
        else:
            first = last = int(rng)
            if step:
                last = 10**6
        if first <= value <= last and (value - first) % int(step or 1) == 0:
            return True
    return False


def _cron_matches(expression: str, t: datetime) -> bool:
    minute, hour, dom, month, dow = expression.split()
    assert dom == "*" or dow == "*", "the oracle reads one of day-of-month and day-of-week"
    weekday = (t.weekday() + 1) % 7  # cron: 0 is Sunday
    return (_matches(minute, t.minute, 0) and _matches(hour, t.hour, 0) and _matches(dom, t.day, 1)
            and _matches(month, t.month, 1) and (_matches(dow, weekday, 0) or weekday == 0 and _matches(dow, 7, 0)))


def oracle(expression: str, tz: ZoneInfo, begin: datetime, end: datetime) -> list[datetime]:
    """Every fire instant from the wall-clock minutes that real time passes through in
    [begin, end): a matching wall-clock time fires at the first instant that shows it, and one
    that no instant shows (a gap) at the first instant that shows a later time."""
    instants = [begin + k * MINUTE for k in range(int((end - begin) / MINUTE))]
    walls = [u.astimezone(tz).replace(tzinfo=None) for u in instants]
    first: dict[datetime, datetime] = {}
    for u, w in zip(instants, walls):
        first.setdefault(w, u)
    fires = set()
    wall = min(walls)
    while wall <= max(walls):
        if _cron_matches(expression, wall):
            if wall in first:
                fires.add(first[wall])
            else:
                fires.add(next(u for u, w in zip(instants, walls) if w > wall))
        wall += MINUTE
    return sorted(fires)


def transitions(tz: ZoneInfo, begin: int = 2020, end: int = 2040) -> list[datetime]:
    """The instants (to the minute) where ``tz``'s offset changes in [begin, end), looked for a
    week at a time (no zone changes its offset and back within a week in these years)."""
    out, week = [], datetime(begin, 1, 1, tzinfo=UTC)
    offset = week.astimezone(tz).utcoffset()
    while week.year < end:
        following = week + timedelta(days=7)
        if following.astimezone(tz).utcoffset() != offset:
            low, high = 0, 7 * 24 * 60  # minutes into the week: the old offset at low, the new one at high
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if (week + middle * MINUTE).astimezone(tz).utcoffset() == offset \
                    else (low, middle)
            out.append(week + high * MINUTE)
            offset = following.astimezone(tz).utcoffset()
        week = following
    return out


EXPRESSIONS = ["30 2 * * *", "*/15 * * * *", "0 * * * *", "45 1 * * *", "0,30 0-3 * * *", "15 3 * * 0",
               "0 0 * * *", "59 23 * * *"]
#: real time around a transition, and the margin at each end whose fires are not compared
WINDOW, MARGIN = timedelta(hours=5), timedelta(hours=2, minutes=30)


def _zones_with_transitions() -> dict[str, list[datetime]]:
    found, seen = {}, set()
    for name in sorted(available_timezones()):
        if name.startswith(("posix/", "right/")) or name in ("Factory", "localtime"):
            continue
        try:
            tz = ZoneInfo(name)
        except (OSError, ValueError):
            continue
        moments = transitions(tz)
        fingerprint = tuple((m, m.astimezone(tz).utcoffset()) for m in moments)
        if moments and fingerprint not in seen:  # a link or a twin zone: checked once
            seen.add(fingerprint)
            found[name] = moments
    return found


def test_fire_times_match_the_oracle_around_every_zones_transitions_2020_to_2040():
    zones = _zones_with_transitions()
    assert len(zones) > 40, sorted(zones)  # distinct behaviours: twins and links are checked once
    rng = random.Random(1)
    checked = 0
    for name, moments in zones.items():
        tz = ZoneInfo(name)
        # every transition of the half-hour shifter, two of each other zone (seeded), and its last
        picked = moments if name in ("Australia/LHI", "Australia/Lord_Howe") else {*rng.sample(moments, min(2, len(moments))), moments[-1]}
        for moment in sorted(picked):
            begin, end = moment - WINDOW, moment + WINDOW
            for expression in EXPRESSIONS:
                expected = [u for u in oracle(expression, tz, begin, end) if begin + MARGIN <= u < end - MARGIN]
                got = table(expression, name).between(begin + MARGIN, end - MARGIN)
                assert got == expected, (name, moment, expression, local(got, name), local(expected, name))
                checked += 1
    assert checked > 1000, checked


def test_the_gap_end_is_the_instant_the_clocks_jump():
    berlin = ZoneInfo("Europe/Berlin")
    assert instant(datetime(2026, 3, 29, 2, 30), berlin) == utc(2026, 3, 29, 1, 0)
    assert instant(datetime(2026, 3, 29, 3, 0), berlin) == utc(2026, 3, 29, 1, 0)
    assert instant(datetime(2026, 10, 25, 2, 30), berlin) == utc(2026, 10, 25, 0, 30)  # first occurrence
    howe = ZoneInfo("Australia/Lord_Howe")  # +10:30 <-> +11, half an hour at 02:00
    assert instant(datetime(2026, 10, 4, 2, 15), howe) == instant(datetime(2026, 10, 4, 2, 30), howe)
