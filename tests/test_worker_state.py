"""A long-lived worker's memory of tracks lasts exactly as long as what it describes: a track
it saw cancelled or taken back runs again when it comes back to the same worker."""
import subprocess
import sys

from conftest import ROOT, finished, run_tracks, stop, wait_for, worker

from pipeline_engine import service


def test_a_track_cancelled_on_a_worker_runs_when_the_same_worker_gets_it_back(db, db_url, tmp_path):
    service.import_graph(db, {"name": "slow", "vertices": [{"name": "a", "script": "sleep 1.5"}]}, seal=True)
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
