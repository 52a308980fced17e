"""What a new user hits in the first hour (issue 11): each defect here failed before its fix."""
from __future__ import annotations

import glob
import os
import threading

import pytest
from conftest import run_tracks, wait_for

from pipeline_engine import params, service
from pipeline_engine.runner import run_pipeline


def define(db, name, vertices, edges=()):
    service.import_graph(db, {"name": name, "vertices": vertices, "edges": [list(e) for e in edges]}, seal=True)


@pytest.mark.parametrize("secret", ["", "x", "ab", "abc"])
def test_a_secret_of_any_length_is_masked_and_fails_no_vertex(db, secret, log_dir):
    # a one-character secret made every vertex fail: "max() arg is an empty sequence"
    define(db, "short", [{"name": "a", "script": "echo hi"},
                         {"name": "b", "script": "echo \"[{pw}]\"; echo \"[{pw}]\" >&2",
                          "inputs": {"pw": {"type": "secret", "required": False}}}])
    run = service.start_run(db, "short", {"pw": secret})
    assert run_pipeline(db, run, log_dir=log_dir) == "succeeded"
    tracks = run_tracks(db, run.id)
    assert tracks["a"].stdout == "hi\n"
    shown = f"[{params.MASK}]\n" if secret else "[]\n"
    assert (tracks["b"].stdout, tracks["b"].stderr) == (shown, shown)
    log = open(tracks["b"].log_path, "rb").read()
    assert log.endswith(shown.encode() * 2)


def test_the_log_file_streams_while_the_vertex_runs(db, log_dir):
    # the log file stayed at 0 bytes until the attempt ended
    define(db, "slow", [{"name": "s", "script": "echo first; sleep 3; echo second"}])
    run = service.start_run(db, "slow")
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("state", run_pipeline(db, run, log_dir=log_dir)))
    thread.start()
    try:
        def first_line_written():
            paths = glob.glob(os.path.join(log_dir, "**", "s.log"), recursive=True)
            return paths and b"first\n" in open(paths[0], "rb").read()
        wait_for(first_line_written, 2.5, "the first line in the log file while the vertex runs")
        assert "state" not in result  # still running: the line came as it was printed
    finally:
        thread.join(10)
    assert result["state"] == "succeeded"


def test_import_with_seal_and_seal_print_the_warnings_of_check(cli, tmp_path):
    # graph import --seal (the demo's way) said nothing of them
    path = tmp_path / "warn.yaml"
    path.write_text("name: warn\nvertices:\n  - name: a\n    script: echo {who}\n    pool: nowhere\n")
    warned = ["warning: vertex 'a': {who} names no input of the vertex and stays as written",
              "warning: pool 'nowhere' (vertex 'a') does not exist"]
    code, out, err = cli("graph", "import", str(path), "--seal")
    assert code == 0 and out.strip().endswith("sealed"), err
    assert [line for line in err.splitlines() if line.startswith("warning:")][0] == warned[0]
    assert warned[1] in err
    code, out, err = cli("graph", "import", str(path), "--name", "warn2", "--check")
    assert code == 0 and warned[0] in err and warned[1] in err
    code, out, err = cli("graph", "seal", "warn2")
    assert code == 0 and warned[0] in err and warned[1] in err and "is sealed" in out


def test_a_mysql_url_without_a_database_is_one_line_exit_2(capsys):
    # it printed a 40-line traceback (an assertion deep in the driver's dialect)
    from pipeline_engine.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["--db", "mysql://root@127.0.0.1:3306/", "runs", "list"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "names no database" in err


def test_an_empty_db_option_is_refused_rather_than_the_default_used(capsys, tmp_path, monkeypatch):
    from pipeline_engine.cli import main
    monkeypatch.setenv("HOME", str(tmp_path))  # the default database would be created here
    with pytest.raises(SystemExit) as exc:
        main(["--db", "", "runs", "list"])
    assert exc.value.code == 2 and "--db is empty" in capsys.readouterr().err
    assert not (tmp_path / ".local").exists()


def test_a_negative_pool_size_says_what_a_size_must_be(cli, unchanged):
    with unchanged():
        code, _, err = cli("pool", "set", "warehouse", "-1")
    assert code == 2 and "the size of a pool must be 0 or more, got -1" in err and "No such option" not in err
    code, out, _ = cli("pool", "set", "warehouse", "0")
    assert code == 0 and "size 0" in out


def test_prune_and_graph_delete_say_what_they_would_delete_and_what_went(db, db_url, cli, log_dir, unchanged):
    from datetime import timedelta

    from sqlalchemy import update

    from pipeline_engine import store
    from pipeline_engine.models import Pipeline
    define(db, "g", [{"name": "a", "script": "echo a"}, {"name": "b", "script": "echo b"}], [("a", "b")])
    ids = []
    for _ in range(3):
        code, out, _ = cli("run", "g")
        assert code == 0, out
        ids.append(int(out.split()[1]))
    old = store.now() - timedelta(days=10)
    with db.transaction() as s:
        s.execute(update(Pipeline).where(Pipeline.id.in_(ids[:2])).values(finished_at=old))
    logs = os.path.join(log_dir, db.key)
    with unchanged():
        code, out, _ = cli("prune", "--older-than", "7", "--dry-run")
    assert (code, out) == (0, "would prune 2 runs, 4 tracks; nothing deleted (dry run)\n")
    assert len(os.listdir(logs)) == 3
    with unchanged():
        code, out, _ = cli("graph", "delete", "g", "--with-runs", "--dry-run")
    assert (code, out) == (0, "graph 'g' would be deleted: 1 version, 2 vertices, 1 edge, 3 runs, 6 tracks;"
                              " nothing deleted (dry run)\n")
    code, out, _ = cli("graph", "delete", "g", "--with-runs")
    assert (code, out) == (0, "graph 'g' deleted: 1 version, 2 vertices, 1 edge, 3 runs, 6 tracks\n")
    assert os.listdir(logs) == []  # their log files went with them


def test_messages_speak_english(db, cli, tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("name: one\nvertices:\n  - name: a\n    script: echo a\n")
    code, out, _ = cli("graph", "import", str(path), "--seal")
    assert out == "graph 'one' version 1 imported: 1 vertex, 0 edges, sealed\n"
    code, out, _ = cli("run", "one")
    run_id = out.split()[1]
    code, _, err = cli("cancel", run_id)
    assert code != 0 and f"run {run_id} has succeeded: only a running or queued run can be cancelled" in err


def test_every_problem_of_a_vertex_is_reported_at_once(cli, tmp_path, unchanged):
    # only the first problem of a vertex was reported
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nvertices:\n  - name: a\n    script: echo {n}\n    timeout: -1\n    retries: x\n"
                    "    pool: 'no/pool'\n    inputs:\n      n: {type: int, default: abc}\n      m: {type: nope}\n"
                    "  - name: b\n    colour: red\n")
    with unchanged():
        code, _, err = cli("graph", "import", str(path))
    assert code == 2 and "Traceback" not in err
    for problem in ["vertex 'a': timeout must be", "vertex 'a': retries must be", "vertex 'a': pool name",
                    "vertex 'a': input 'n': default 'abc' is not valid", "vertex 'a': input 'm': unknown type",
                    "vertex 'b': unknown key 'colour'", "vertex 'b': missing key 'script'"]:
        assert problem in err, (problem, err)
