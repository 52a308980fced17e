"""Schedules on every backend: defined and refused, caught up after downtime by each policy,
each overlap policy, parameters filled per fire time, and exactly once with several scheduler
processes, one of them killed. Time is the test's: ``decide_due(now=...)`` takes a clock."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import ROOT, snapshot

from pipeline_engine import schedules, service
from pipeline_engine.errors import AlreadyExistsError, NotFoundError, ScheduleError

UTC = timezone.utc
KEYS = {"name", "graph", "cron", "every", "timezone", "parameters", "catchup", "max_catchup", "overlap", "start",
        "end", "paused", "next_fire_at", "last_fire_at"}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def report(db, name="report", script="echo {day} {rows}", inputs=None):
    service.import_graph(db, {"name": name, "vertices": [
        {"name": "make", "script": script, "inputs": inputs or {"day": "str", "rows": {"type": "int", "max": 1000}}}]},
        seal=True)


def add(db, name="nightly", graph="report", **fields):
    fields.setdefault("parameters", {"day": "{fire_date}", "rows": 5})
    return service.add_schedule(db, schedules.spec_from(name, graph, **fields))


def decisions(db, name="nightly"):
    return [(d.fire_at, d.decision) for d in reversed(service.schedule_history(db, name, None))]


# --- defining ----------------------------------------------------------------------------------------

def test_a_schedule_is_added_listed_shown_paused_resumed_and_deleted_with_the_cli(db, cli):
    report(db)
    code, out, err = cli("schedule", "add", "nightly", "--graph", "report", "--cron", "30 2 * * *", "--timezone",
                         "Europe/Berlin", "-p", "day={fire_date}", "-p", "rows=100", "--overlap", "allow")
    assert code == 0 and "schedule 'nightly' added for graph 'report'" in out, err
    code, out, _ = cli("schedule", "list", "--json")
    (listed,) = json.loads(out)
    assert set(listed) == KEYS
    assert listed["cron"] == "30 2 * * *" and listed["every"] is None and listed["timezone"] == "Europe/Berlin"
    assert listed["parameters"] == {"day": "{fire_date}", "rows": "100"} and listed["paused"] is False
    assert (listed["catchup"], listed["max_catchup"], listed["overlap"]) == ("latest", 10, "allow")
    assert datetime.fromisoformat(listed["next_fire_at"]).astimezone(UTC).strftime("%H:%M") in ("01:30", "00:30")
    code, out, _ = cli("schedule", "next", "nightly", "--count", "3", "--after", "2027-03-27T12:00", "--json")
    assert json.loads(out) == [
        {"local": "2027-03-28T03:00:00+02:00", "utc": "2027-03-28T01:00:00+00:00"},  # the skipped 02:30
        {"local": "2027-03-29T02:30:00+02:00", "utc": "2027-03-29T00:30:00+00:00"},
        {"local": "2027-03-30T02:30:00+02:00", "utc": "2027-03-30T00:30:00+00:00"}]
    code, out, _ = cli("schedule", "show", "nightly", "--json")
    shown = json.loads(out)
    assert {k: shown[k] for k in KEYS} == listed and len(shown["next"]) == 5 and shown["history"] == []
    assert cli("schedule", "pause", "nightly")[0] == 0
    assert json.loads(cli("schedule", "list", "--json")[1])[0]["paused"] is True
    assert service.decide_due(db, scheduler="t", now=utc(2030, 1, 1)) == []  # paused: nothing is decided
    code, out, _ = cli("schedule", "resume", "nightly")
    assert code == 0 and "next fire time" in out
    assert cli("schedule", "delete", "nightly")[0] == 0
    assert json.loads(cli("schedule", "list", "--json")[1]) == []
    assert "no schedule 'nightly'" in cli("schedule", "show", "nightly")[2]


@pytest.mark.parametrize("args, says", [
    (["--cron", "61 * * * *"], "schedule 'bad': cron: '61 * * * *': bad minute"),
    (["--cron", "* * * *"], "has 4 fields"),
    (["--every", "0s"], "schedule 'bad': every: '0s' is no time at all"),
    (["--every", "5x"], "schedule 'bad': every: '5x' is not a duration"),
    (["--cron", "@daily", "--every", "1h"], "give cron or every"),
    ([], "give cron or every"),
    (["--cron", "@daily", "--timezone", "Mars/Olympus"], "schedule 'bad': timezone: unknown time zone 'Mars/Olympus'"),
    (["--every", "1h", "--start", "2026-12-02", "--end", "2026-12-01"], "end (2026-12-01T00:00:00+00:00) is not after"),
    (["--every", "1h", "--start", "yesterday"], "schedule 'bad': start: 'yesterday' is not an ISO 8601 date-time"),
    (["--every", "1h", "--max-catchup", "0"], "max_catchup must be a whole number from 1"),
    (["--every", "1h", "-p", "rows=many"], "vertex 'make': input 'rows'"),
    (["--every", "1h", "-p", "rows=5000"], "vertex 'make': input 'rows'"),
    (["--every", "1h", "-p", "rows=5"], "input 'day' (str) is required"),
    (["--every", "1h", "-p", "day=x", "-p", "rows=1", "-p", "nope=1"], "parameter 'nope'"),
])
def test_a_bad_schedule_is_refused_naming_it_and_changes_nothing(db, cli, args, says):
    report(db)
    before = snapshot(db)
    code, out, err = cli("schedule", "add", "bad", "--graph", "report", *args)
    assert code == 2 and says in err and "Traceback" not in err, (code, out, err)
    assert snapshot(db) == before


def test_schedules_of_what_cannot_be_scheduled_are_refused(db):
    report(db)
    report(db, "vault", "curl -u {token} x", {"token": "secret"})
    before = snapshot(db)
    with pytest.raises(ScheduleError, match=r"graph 'vault' has secret inputs \(token\)"):
        add(db, graph="vault", every="1h", parameters={})
    with pytest.raises(NotFoundError, match="no graph 'ghost'"):
        add(db, graph="ghost", every="1h")
    assert snapshot(db) == before
    add(db, every="1h")
    with pytest.raises(AlreadyExistsError):
        add(db, every="2h")
    assert [x.every for x in service.list_schedules(db)] == ["1h"]


# --- deciding --------------------------------------------------------------------------------------

HOUR = timedelta(hours=1)


@pytest.mark.parametrize("catchup, max_catchup, created", [
    ("none", 10, []), ("latest", 10, [9]), ("all", 3, [7, 8, 9]), ("all", 50, list(range(10)))])
def test_after_downtime_each_catch_up_policy_runs_what_it_says_and_records_the_rest_as_missed(
        db, catchup, max_catchup, created):
    report(db)
    start = utc(2026, 6, 1, 0, 0)
    add(db, every="1h", start=start, catchup=catchup, max_catchup=max_catchup, overlap="allow")
    now = start + 9 * HOUR + timedelta(minutes=30)  # ten fire times passed: 00:00 ... 09:00, all late
    got = service.decide_due(db, scheduler="t", now=now)
    assert [(d.fire_at, d.decision) for d in got] == \
        [(start + k * HOUR, "created" if k in created else "missed") for k in range(10)]
    assert decisions(db) == [(d.fire_at, d.decision) for d in got]
    missed = [d for d in got if d.decision == "missed"]
    assert all("late by" in d.reason and f"catch-up: {catchup}" in d.reason for d in missed)
    runs = {r.id: r for r in service.list_runs(db)}
    assert sorted(runs) == sorted(d.run for d in got if d.run)
    assert {runs[d.run].fire_at for d in got if d.run} == {start + k * HOUR for k in created}
    assert all(r.trigger == "schedule" and r.schedule == "nightly" for r in runs.values())
    # taken again at the same moment: nothing more is decided; the next fire time is on time
    assert service.decide_due(db, scheduler="other", now=now) == []
    assert service.show_schedule(db, "nightly").next_fire_at == start + 10 * HOUR
    on_time = service.decide_due(db, scheduler="t", now=start + 10 * HOUR + timedelta(seconds=5))
    assert [(d.fire_at, d.decision) for d in on_time] == [(start + 10 * HOUR, "created")]


def test_a_backlog_of_any_length_is_bounded(db):
    report(db)
    start = utc(2025, 1, 1)
    add(db, every="1s", start=start, catchup="latest", overlap="allow")
    now = utc(2026, 1, 1)  # a year: 31 million fire times
    began = time.monotonic()
    got = service.decide_due(db, scheduler="t", now=now)
    assert time.monotonic() - began < 30
    missed = [d for d in got if d.decision == "missed"]
    created = [d.fire_at for d in got if d.decision == "created"]
    # the late ones: the latest runs, the 100 before it are recorded, the rest counted in the oldest
    assert len(missed) == schedules.MISSED_KEPT and "earlier fire time(s), not recorded one by one" in missed[0].reason
    # the last minute's are not late (the grace): they run
    assert created == [now - timedelta(seconds=k) for k in range(61, -1, -1)]


def test_a_fire_time_late_by_less_than_the_grace_runs(db):
    report(db)
    start = utc(2026, 6, 1, 12)
    add(db, cron="0 12 * * *", start=start, catchup="none")
    got = service.decide_due(db, scheduler="t", now=start + timedelta(seconds=59))
    assert [(d.fire_at, d.decision) for d in got] == [(start, "created")]


def test_overlap_skip_records_the_run_still_going(db):
    report(db)
    start = utc(2026, 6, 1)
    add(db, every="1h", start=start, overlap="skip")
    first = service.decide_due(db, scheduler="t", now=start)[0]
    second = service.decide_due(db, scheduler="t", now=start + HOUR)[0]
    assert first.decision == "created" and second.decision == "skipped" and second.run is None
    assert f"run {first.run} of this schedule was still running" in second.reason
    service.cancel_run(db, first.run)
    third = service.decide_due(db, scheduler="t", now=start + 2 * HOUR)[0]
    assert third.decision == "created"


def test_overlap_allow_starts_another_and_cancel_cancels_the_previous(db):
    report(db)
    start = utc(2026, 6, 1)
    add(db, "many", every="1h", start=start, overlap="allow")
    add(db, "latest-only", every="1h", start=start, overlap="cancel")
    service.decide_due(db, scheduler="t", now=start)
    got = {d.schedule: d for d in service.decide_due(db, scheduler="t", now=start + HOUR)}
    assert got["many"].decision == "created"
    runs = {r.id: r for r in service.list_runs(db)}
    assert [r.state for r in runs.values() if r.schedule == "many"] == ["running", "running"]
    cancelled = [r for r in runs.values() if r.schedule == "latest-only" and r.state == "cancelled"]
    assert got["latest-only"].decision == "created" and len(cancelled) == 1
    assert f"cancelled run(s) {cancelled[0].id}" in got["latest-only"].reason
    assert runs[got["latest-only"].run].state == "running"


def test_parameters_are_filled_per_fire_time_in_the_schedules_zone_and_typed(db):
    report(db, script="echo {day} {at} {clock}", inputs={"day": "str", "at": "str", "clock": "str"})
    fire = utc(2026, 12, 31, 23, 30)  # 00:30 on 1 January in Berlin
    add(db, cron="30 0 * * *", timezone="Europe/Berlin", start=fire,
        parameters={"day": "{fire_date}", "at": "{fire_at}", "clock": "{fire_time}"})
    (d,) = service.decide_due(db, scheduler="t", now=fire)
    assert d.decision == "created"
    assert service.show_run(db, d.run).parameters == {"day": "2027-01-01", "at": "2026-12-31T23:30:00Z",
                                                      "clock": "00:30"}


def test_overlap_queue_queues_behind_the_previous_run_and_starts_in_order(db):
    report(db)
    start = utc(2026, 6, 1)
    add(db, every="1h", start=start, overlap="queue", catchup="all")
    got = service.decide_due(db, scheduler="t", now=start + 2 * HOUR)  # three fire times at once
    assert [d.decision for d in got] == ["created", "queued", "queued"]
    first, second, third = (d.run for d in got)
    assert f"behind run {first}" in got[1].reason and f"behind run {second}" in got[2].reason
    state = lambda run: service.show_run(db, run, limit=0).state  # noqa: E731
    assert [state(r) for r in (first, second, third)] == ["running", "queued", "queued"]
    assert service.show_run(db, second, limit=0).started_at is None
    assert service.promote_queued(db) == []  # the first still runs
    service.cancel_run(db, first)
    assert service.promote_queued(db) == [second] and service.promote_queued(db) == []
    assert [state(r) for r in (first, second, third)] == ["cancelled", "running", "queued"]
    assert [r.id for r in service.list_runs(db, state="queued")] == [third]
    service.cancel_run(db, third)  # a queued run can be cancelled
    assert state(third) == "cancelled" and service.promote_queued(db) == []


def test_a_fire_time_whose_run_cannot_start_is_refused_with_the_reason(db):
    report(db)
    start = utc(2026, 6, 1)
    add(db, every="1h", start=start, overlap="allow")
    # the graph's next sealed version needs an input the schedule does not give
    service.import_graph(db, {"name": "report", "vertices": [
        {"name": "make", "script": "echo {day} {rows} {region}",
         "inputs": {"day": "str", "rows": "int", "region": "str"}}]}, seal=True)
    (d,) = service.decide_due(db, scheduler="t", now=start)
    assert d.decision == "refused" and d.run is None and "input 'region' (str) is required" in d.reason
    assert service.list_runs(db) == []
    service.new_version(db, "report")  # a draft does not run: the sealed version still refuses
    (again,) = service.decide_due(db, scheduler="t", now=start + HOUR)
    assert again.decision == "refused"


def test_a_start_in_the_future_and_an_end(db):
    report(db)
    add(db, every="1h", start=utc(2026, 6, 1), end=utc(2026, 6, 1, 2), catchup="all")
    assert service.decide_due(db, scheduler="t", now=utc(2026, 5, 31)) == []
    got = service.decide_due(db, scheduler="t", now=utc(2026, 6, 2))
    assert [d.fire_at for d in got] == [utc(2026, 6, 1, 0), utc(2026, 6, 1, 1)]
    assert service.show_schedule(db, "nightly").next_fire_at is None  # ended
    assert service.next_fire_times(db, "nightly", 3, utc(2026, 1, 1)) != []
    assert service.next_fire_times(db, "nightly", 3, utc(2026, 6, 2)) == []


def test_schedulers_whose_clocks_differ_by_less_than_the_grace_take_the_same_decisions_once(db):
    report(db)
    fire = utc(2026, 6, 1, 12)
    add(db, every="1h", start=fire, catchup="none", overlap="allow")
    slow, fast = fire - timedelta(seconds=40), fire + timedelta(seconds=50)
    assert service.decide_due(db, scheduler="slow", now=slow) == []  # its clock has not reached it
    (d,) = service.decide_due(db, scheduler="fast", now=fast)
    assert (d.fire_at, d.decision, d.scheduler) == (fire, "created", "fast")  # 50 s late: within the grace
    assert service.decide_due(db, scheduler="slow", now=fire + timedelta(seconds=5)) == []  # decided already
    assert [x.decision for x in service.schedule_history(db, "nightly", None)] == ["created"]


def test_scheduler_once_decides_what_is_due_after_downtime_and_exits(db, db_url):
    report(db)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    add(db, every="1h", start=start, catchup="latest", overlap="allow")
    done = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "scheduler", "--once"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # three late (the latest of them runs), and the one due now
    assert [d for _, d in decisions(db)] == ["missed", "missed", "created", "created"]
    assert done.stderr.count(": missed (late by") == 2 and done.stderr.count(": created run ") == 2
    again = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "scheduler", "--once"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stderr == "" and len(decisions(db)) == 4
    # with a grace of 3 hours, nothing of the same downtime is late
    service.delete_schedule(db, "nightly")
    add(db, "lenient", every="1h", start=start, catchup="none", overlap="allow")
    done = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "scheduler", "--once",
                           "--late-after", str(4 * 3600)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and [d for _, d in decisions(db, "lenient")] == ["created"] * 4, done.stderr


# --- exactly once, with schedulers that die --------------------------------------------------------

def _scheduler(db_url, log):
    return subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "scheduler", "--tick", "1"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})


def test_three_schedulers_one_killed_decide_every_fire_time_exactly_once(db, db_url, tmp_path):
    report(db)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    add(db, every="1s", start=start, catchup="all", max_catchup=100, overlap="allow")
    logs = [open(tmp_path / f"s{i}.log", "w") for i in range(4)]
    procs = [_scheduler(db_url, logs[i]) for i in range(3)]
    rng = random.Random()
    try:
        time.sleep(2 + rng.uniform(2, 8))
        procs[0].send_signal(signal.SIGKILL)  # at a random moment, perhaps inside a transaction
        procs[0].wait()
        time.sleep(rng.uniform(0.5, 3))
        procs[0] = _scheduler(db_url, logs[3])  # and back
        time.sleep(20 - (datetime.now(UTC) - start).total_seconds() + 2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
    end = start + timedelta(seconds=20)
    got = [d for d in service.schedule_history(db, "nightly", None) if d.fire_at < end]
    times = sorted(d.fire_at for d in got)
    assert times == [start + timedelta(seconds=k) for k in range(20)]  # each once, none missing
    assert all(d.decision == "created" for d in got), [(d.fire_at, d.decision, d.reason) for d in got]
    runs = [r for r in service.list_runs(db) if r.fire_at is not None and r.fire_at < end]
    assert sorted(r.fire_at for r in runs) == times and {d.run for d in got} == {r.id for r in runs}
    # no fire time waited long for its decision, nor was there a gap: at most two ticks (1 s)
    late = max(d.decided_at - d.fire_at for d in got)
    assert late < timedelta(seconds=2), late
    made = sorted(r.started_at for r in runs)
    assert max(b - a for a, b in zip(made, made[1:])) <= timedelta(seconds=2)
    assert len({d.scheduler for d in got}) >= 2  # they shared the work


def test_serve_and_worker_scheduler_take_the_decisions_and_run_them(db, db_url, tmp_path):
    from conftest import Server, wait_for

    report(db)
    add(db, every="1s", catchup="none", overlap="allow")
    quiet = Server(db_url, tmp_path / "quiet.log", "--no-scheduler", "--no-worker")
    try:
        time.sleep(2.5)
        assert service.schedule_history(db, "nightly", None) == []  # nobody decides
    finally:
        quiet.stop()
    server = Server(db_url, tmp_path / "serve.log")
    try:
        wait_for(lambda: any(r.state == "succeeded" for r in service.list_runs(db)), 30, "a scheduled run to run")
    finally:
        assert server.stop() == 0
    assert "schedule 'nightly'" in server.text() and ": created run " in server.text()
    service.pause_schedule(db, "nightly")
    service.add_schedule(db, schedules.spec_from("other", "report", every="1s", catchup="none",
                                                 parameters={"day": "x", "rows": 1}))
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "worker", "--scheduler"],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any(r.state == "succeeded" and r.schedule == "other" for r in service.list_runs(db)), 30,
                 "the worker's scheduler to make a run it runs")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        log.close()


# --- in graph files -----------------------------------------------------------------------------

FILE = """
name: report
vertices:
  - name: make
    script: echo {day} {rows}
    inputs: {day: str, rows: {type: int, max: 1000}}
schedules:
  - name: nightly
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    parameters: {day: "{fire_date}", rows: 100}
    catchup: latest
    overlap: skip
  - name: poll
    every: 15m
    parameters: {day: today, rows: 1}
    catchup: all
    max_catchup: 3
"""


def test_a_graph_files_schedules_are_applied_reported_and_exported_back(db, cli, tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(FILE)
    code, out, err = cli("graph", "import", str(path), "--seal")
    assert code == 0, err
    assert "schedule 'nightly' created" in out + err and "schedule 'poll' created" in out + err
    listed = {x.name: x for x in service.list_schedules(db)}
    assert (listed["nightly"].cron, listed["nightly"].timezone, listed["nightly"].parameters) == \
        ("30 2 * * *", "Europe/Berlin", {"day": "{fire_date}", "rows": 100})
    assert (listed["poll"].every, listed["poll"].catchup, listed["poll"].max_catchup) == ("15m", "all", 3)
    code, out, err = cli("graph", "import", str(path), "--seal")  # the same file: nothing to say
    assert code == 0 and "schedule '" not in out + err
    path.write_text(FILE.replace('"30 2 * * *"', '"45 3 * * *"'))
    code, out, err = cli("graph", "import", str(path), "--seal")
    assert code == 0 and "schedule 'nightly' updated" in out + err and "'poll'" not in out + err
    code, exported, _ = cli("graph", "export", "report")
    again = tmp_path / "again.yaml"
    again.write_text(exported)
    before = snapshot(db)
    code, out, err = cli("graph", "import", str(again), "--seal")  # exported, imported: the same
    assert code == 0 and "schedule '" not in out + err
    assert {x.name: x for x in service.list_schedules(db)} == {**listed, "nightly": service.show_schedule(db, "nightly")}
    assert service.show_schedule(db, "nightly").cron == "45 3 * * *"
    assert {k: v for k, v in snapshot(db).items() if k != "audit"} == {k: v for k, v in before.items() if k != "audit"}


@pytest.mark.parametrize("entry, says", [
    ('{name: n, cron: "61 * * * *"}', "schedule 'n': cron: '61 * * * *': bad minute"),
    ("{name: n, every: 5m, colour: red}", "schedule 'n': unknown key 'colour'"),
    ("{name: n, every: 5m}", "input 'day' (str) is required"),
    ("{name: n, every: 5m, timezone: Nowhere/Land, parameters: {day: x, rows: 1}}", "unknown time zone"),
])
def test_a_graph_file_with_a_bad_schedule_imports_nothing(db, cli, tmp_path, entry, says):
    path = tmp_path / "bad.yaml"
    path.write_text(FILE.split("schedules:")[0] + f"schedules:\n  - {entry}\n")
    before = snapshot(db)
    code, out, err = cli("graph", "import", str(path), "--seal")
    assert code == 2 and says in err, (out, err)
    assert snapshot(db) == before


# --- backfill ------------------------------------------------------------------------------------

def test_a_backfill_makes_one_run_per_fire_time_oldest_first_at_most_n_running_and_never_twice(db):
    report(db)
    start, end = utc(2026, 11, 1), utc(2026, 11, 6)
    planned = service.backfill(db, "report", start, end, cron="30 2 * * *", timezone="Europe/Berlin",
                               parameters={"day": "{fire_date}", "rows": 3}, max_active=2, dry_run=True)
    assert [r.fire_at for r in planned.runs] == [utc(2026, 11, d, 1, 30) for d in range(1, 6)]
    assert [r.local.isoformat() for r in planned.runs][0] == "2026-11-01T02:30:00+01:00"
    assert planned.id is None and all(r.run is None for r in planned.runs) and service.list_runs(db) == []
    made = service.backfill(db, "report", start, end, cron="30 2 * * *", timezone="Europe/Berlin",
                            parameters={"day": "{fire_date}", "rows": 3}, max_active=2)
    assert [(r.created, r.state) for r in made.runs] == [(True, "running")] * 2 + [(True, "queued")] * 3
    ids = [r.run for r in made.runs]
    assert ids == sorted(ids)  # oldest first
    shown = service.show_run(db, ids[0], limit=0)
    assert (shown.trigger, shown.schedule, shown.fire_at) == ("backfill", None, utc(2026, 11, 1, 1, 30))
    assert shown.parameters == {"day": "2026-11-01", "rows": 3}
    assert service.promote_queued(db) == []  # two run already
    service.cancel_run(db, ids[1])
    assert service.promote_queued(db) == [ids[2]]
    # the same backfill again, wider: what exists stays, only the new fire time is made
    again = service.backfill(db, "report", start, utc(2026, 11, 7), cron="30 2 * * *", timezone="Europe/Berlin",
                             parameters={"day": "{fire_date}", "rows": 3}, max_active=2)
    assert [r.created for r in again.runs] == [False] * 5 + [True]
    # (max_active counts this backfill's own runs: its one new run runs)
    assert [r.run for r in again.runs][:5] == ids and again.runs[-1].state == "running"
    assert len(service.list_runs(db)) == 6


def test_a_backfill_of_a_schedule_takes_its_times_zone_and_parameters(db):
    report(db)
    add(db, every="6h", start=utc(2026, 1, 1, 3), parameters={"day": "{fire_date}", "rows": 9})
    made = service.backfill(db, "report", utc(2026, 3, 1), utc(2026, 3, 2), schedule="nightly",
                            parameters={"rows": 10}, max_active=10)
    assert [r.fire_at.hour for r in made.runs] == [3, 9, 15, 21]  # the schedule's phase
    assert service.show_run(db, made.runs[0].run, limit=0).parameters == {"day": "2026-03-01", "rows": 10}
    assert {r.schedule for r in service.list_runs(db)} == {"nightly"}
    # a schedule's own fire time is not held back by its backfill's runs (overlap: skip)
    (d,) = service.decide_due(db, scheduler="t", now=service.show_schedule(db, "nightly").next_fire_at)
    assert d.decision == "created"


@pytest.mark.parametrize("args, says", [
    (["--from", "2026-11-02", "--to", "2026-11-01", "--cron", "@daily"], "to (2026-11-01T00:00:00+00:00) is not after"),
    (["--from", "2026-11-01", "--to", "2026-11-02"], "give a schedule or a cron expression"),
    (["--from", "2026-11-01", "--to", "2026-11-02", "--cron", "@daily", "--schedule", "x"], "give a schedule or"),
    (["--from", "yesterday", "--to", "2026-11-02", "--cron", "@daily"], "from: 'yesterday' is not an ISO 8601"),
    (["--from", "2026-11-01", "--to", "2026-11-02", "--cron", "61 * * * *"], "bad minute"),
    (["--from", "2026-11-01", "--to", "2026-11-02", "--cron", "@daily", "-p", "rows=1"], "input 'day' (str) is required"),
    (["--from", "2026-01-01", "--to", "2027-01-01", "--cron", "* * * * *", "-p", "day=x", "-p", "rows=1"],
     "more than 10000 fire times"),
    (["--from", "2026-11-01", "--to", "2026-11-02", "--schedule", "ghost"], "no schedule 'ghost'"),
    (["--from", "2026-11-01", "--to", "2026-11-02", "--cron", "@daily", "--max-active", "0", "-p", "day=x",
      "-p", "rows=1"], "max_active must be"),
])
def test_a_bad_backfill_is_refused_naming_it_and_writes_nothing(db, cli, args, says):
    report(db)
    before = snapshot(db)
    code, out, err = cli("backfill", "report", *args)
    assert code == 2 and says in err and "Traceback" not in err, (code, out, err)
    assert snapshot(db) == before


def test_the_backfill_command_starts_its_queued_runs_as_earlier_ones_end(db, db_url, tmp_path):
    report(db, script="sleep 0.3; echo {day} {rows}")
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "worker", "--poll", "0.05"],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        done = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "backfill", "report",
                               "--from", "2026-11-01", "--to", "2026-11-05", "--cron", "@daily", "-p", "day={fire_date}",
                               "-p", "rows=2", "--max-active", "2", "--json"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        log.close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["state"] for r in result["runs"]] == ["running", "running", "queued", "queued"]
    assert [r["local"] for r in result["runs"]] == [f"2026-11-0{d}T00:00:00+00:00" for d in range(1, 5)]
    runs = sorted(service.list_runs(db), key=lambda r: r.fire_at)
    assert [r.state for r in runs] in (["succeeded"] * 4, ["succeeded"] * 3 + ["running"],
                                       ["succeeded"] * 2 + ["running"] * 2)  # none left queued
    starts = [r.started_at for r in runs]
    assert starts == sorted(starts)  # started in fire-time order
