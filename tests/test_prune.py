"""`prune` deletes old finished runs with their tracks and log files, in batches, and nothing
else: recent runs and running ones stay. On every backend."""
import os
from datetime import timedelta

import pytest
from sqlalchemy import update

from pipeline_engine import service, store
from pipeline_engine.cli import main
from pipeline_engine.models import Pipeline, Track
from pipeline_engine.runner import run_pipeline


def cli(db_url, capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["--db", db_url, *args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_prune_deletes_old_finished_runs_in_batches_and_keeps_the_rest(db, db_url, capsys, log_dir):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "echo a"},
                                                        {"name": "b", "script": "echo b"}]}, seal=True)
    ids = []
    for _ in range(4):
        code, out, _ = cli(db_url, capsys, "run", "g")
        assert code == 0
        ids.append(int(out.split()[1]))
    running = service.start_run(db, "g").id  # never executed: stays running
    old = store.now() - timedelta(days=10)
    with db.transaction() as s:
        s.execute(update(Pipeline).where(Pipeline.id.in_(ids[:3] + [running])).values(finished_at=old, started_at=old))
    logs = os.path.join(log_dir, db.key)
    assert sorted(os.listdir(logs)) == sorted(f"run-{i}" for i in ids)

    code, out, _ = cli(db_url, capsys, "prune", "--older-than", "7", "--batch", "2")
    assert (code, out) == (0, "pruned 3 run(s), 6 track(s)\n")
    assert [r.id for r in service.list_runs(db)] == [running, ids[3]]
    with db.transaction(write=False) as s:
        assert {t.pipeline_id for t in s.query(Track)} == {running, ids[3]}
    assert os.listdir(logs) == [f"run-{ids[3]}"]
    assert run_pipeline(db, service.load_run(db, running)) == "succeeded"  # running work untouched

    code, out, _ = cli(db_url, capsys, "prune", "--older-than", "7")
    assert out == "pruned 0 run(s), 0 track(s)\n"
    code, _, err = cli(db_url, capsys, "prune", "--older-than", "-1")
    assert code == 2 and "--older-than" in err
