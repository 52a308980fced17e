"""A long-lived worker's memory of tracks lasts exactly as long as what it describes: a track
it saw cancelled or taken back runs again when it comes back to the same worker."""
import logging
import subprocess
import sys
import threading

from conftest import ROOT, finished, run_tracks, stop, wait_for, worker

from pipeline_engine import service
from pipeline_engine.runner import Engine, run_pipeline


def test_a_track_cancelled_on_a_worker_runs_when_the_same_worker_gets_it_back(db, db_url, tmp_path):
    # the first attempt runs until it is cancelled (however slow the machine), the next one ends at once
    again = tmp_path / "again"
    script = f"test -e '{again}' && exit 0; touch '{again}'; sleep 60"
    service.import_graph(db, {"name": "slow", "vertices": [{"name": "a", "script": script}]}, seal=True)
    cli = [sys.executable, "-m", "pipeline_engine", "--db", db_url]
    w = worker(db_url, open(tmp_path / "w.log", "w"), "--concurrency", "1", "--poll", "0.05")
    try:
        run_id = service.start_run(db, "slow", detach=True).id
        wait_for(lambda: run_tracks(db, run_id)["a"].state == "running", 20, "the worker to start it")
        cancelled = subprocess.run([*cli, "cancel", str(run_id), "--wait", "10"], cwd=ROOT, capture_output=True,
                                   text=True)
        assert cancelled.returncode == 0, cancelled.stderr
        again = subprocess.run([*cli, "retry", str(run_id), "--detach"], cwd=ROOT, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert wait_for(lambda: finished(db, run_id), 20, "the worker to run it again") == "succeeded"
        track = run_tracks(db, run_id)["a"]
        assert (track.state, track.attempt, track.error) == ("succeeded", 2, None)
    finally:
        stop(w)


def test_a_listener_that_raises_is_logged_and_the_run_goes_on(db, caplog, tmp_path):
    service.import_graph(db, {"name": "two", "vertices": [{"name": "a", "script": "true"},
                                                          {"name": "b", "script": "true"}],
                              "edges": [["a", "b"]]}, seal=True)
    seen = []

    def broken(event):
        seen.append(event.kind)
        raise RuntimeError("a bug in a progress display")

    run = service.start_run(db, "two")
    outcome = {}
    # in a thread of its own: before the bus, the first event killed a worker thread and the
    # run waited forever for a track that would never end
    thread = threading.Thread(target=lambda: outcome.setdefault(
        "state", run_pipeline(db, run, workers=2, log_dir=str(tmp_path / "logs"), on_event=broken)), daemon=True)
    with caplog.at_level(logging.ERROR, logger="pipeline_engine.events"):
        thread.start()
        thread.join(30)
    assert outcome.get("state") == "succeeded"
    assert {t.state for t in run_tracks(db, run.id).values()} == {"succeeded"}
    assert "started" in seen and "ended" in seen
    logged = [r for r in caplog.records if r.name == "pipeline_engine.events"]
    assert len(logged) == 1 and "an event listener raised" in logged[0].getMessage()
    assert "a bug in a progress display" in logged[0].exc_text


def test_a_worker_forgets_the_runs_that_ended_without_it(db, tmp_path):
    service.import_graph(db, {"name": "slow", "vertices": [{"name": "a", "script": "sleep 30"},
                                                           {"name": "b", "script": "true"}],
                              "edges": [["a", "b"]]}, seal=True)
    engine = Engine(db, workers=2, name="forgetful", lease=3, poll=0.05, log_dir=str(tmp_path / "logs"))
    thread = threading.Thread(target=engine.serve, daemon=True)
    thread.start()
    try:
        runs = [service.start_run(db, "slow", detach=True).id for _ in range(2)]
        # (a claim is committed a moment before the worker reads the run's plan)
        wait_for(lambda: all(run_tracks(db, r)["a"].state == "running" for r in runs)
                 and engine.plans.runs() == set(runs), 20, "both runs to start")
        assert len(engine.plans.jobs) == 4
        for run_id in runs:  # ended by someone else: this worker never finishes them itself
            service.cancel_run(db, run_id, wait=10)
        wait_for(lambda: not engine.plans.runs(), 15, "the worker to forget the cancelled runs")
        assert set(engine.plans.sizes().values()) == {0}, engine.plans.sizes()
    finally:
        engine.stop()
        thread.join(30)
