"""The graph CLI on every backend: commands, JSON shapes, exit codes, one-line errors."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from pipeline_engine import migrate, service
from pipeline_engine.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_check_seal_show_list_export_delete(cli, example, tmp_path):
    code, out, err = cli("graph", "import", example("diamond.yaml"))
    assert code == 0 and "graph 'diamond' version 1 imported: 4 vertices, 4 edges, draft" in out
    code, out, err = cli("graph", "check", "diamond")
    assert code == 0 and "A -> C -> B -> D" in out
    code, out, _ = cli("graph", "seal", "diamond")
    assert code == 0 and "sealed" in out

    code, out, _ = cli("graph", "show", "diamond", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["status"] == "sealed" and shown["name"] == "diamond"
    assert [v["name"] for v in shown["vertices"]] == ["A", "B", "C", "D"]
    assert shown["edges"] == [["A", "B"], ["A", "C"], ["C", "B"], ["B", "D"]]
    assert set(shown["vertices"][0]) == {"name", "description", "script", "inputs", "timeout", "retries", "priority",
                                         "pool", "retry_delay", "retry_backoff", "cwd", "env"}

    code, out, _ = cli("graph", "show", "diamond")
    assert code == 0 and "status:      sealed" in out and "C -> B" in out

    code, out, _ = cli("graph", "list", "--json")
    assert [(g["name"], g["status"], g["vertices"], g["edges"]) for g in json.loads(out)] == [("diamond", "sealed", 4, 4)]
    code, out, _ = cli("graph", "list")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["NAME", "VERSION", "STATUS", "RUNS"] and "diamond" in out

    code, out, _ = cli("graph", "export", "diamond")
    assert code == 0 and yaml.safe_load(out)["edges"] == [["A", "B"], ["A", "C"], ["C", "B"], ["B", "D"]]
    code, out, _ = cli("graph", "export", "diamond", "--format", "json")
    assert json.loads(out)["name"] == "diamond"
    target = tmp_path / "d.json"
    code, _, _ = cli("graph", "export", "diamond", "--format", "json", "-o", str(target))
    assert code == 0 and json.loads(target.read_text()) == json.loads(out)

    code, out, _ = cli("graph", "copy", "diamond", "diamond2")
    assert code == 0
    code, out, _ = cli("graph", "rename", "diamond2", "diamond-next")
    code, out, _ = cli("graph", "delete", "diamond-next")
    assert code == 0 and "deleted" in out
    code, out, _ = cli("graph", "list", "--json")
    assert [g["name"] for g in json.loads(out)] == ["diamond"]


def test_check_of_a_cycle_exits_1_with_the_cycle_on_stderr(cli, example):
    cli("graph", "import", example("cycle.yaml"))
    code, out, err = cli("graph", "check", "cycle")
    assert code == 1 and out == ""
    assert err == "pipeline-engine: error: graph 'cycle': cycle: A -> C -> B -> A\n"


def test_import_with_seal_of_a_cycle_exits_1_and_writes_nothing(cli, example, db):
    code, _, err = cli("graph", "import", example("cycle.yaml"), "--seal")
    assert code == 1 and "cycle: A -> C -> B -> A" in err
    assert service.list_graphs(db) == []


def test_import_seal_and_check_flags(cli, example):
    code, out, _ = cli("graph", "import", example("sales-report.yaml"), "--seal")
    assert code == 0 and out.strip().endswith("sealed")
    code, out, _ = cli("graph", "import", example("diamond.yaml"), "--check", "--name", "d2")
    assert code == 0 and "graph 'd2' version 1 imported" in out and out.strip().endswith("checked")


@pytest.mark.parametrize("args, expected", [
    (["graph", "show", "nope"], "graph 'nope' not found"),
    (["graph", "seal", "nope"], "graph 'nope' not found"),
    (["graph", "frobnicate"], "No such command 'frobnicate'"),
    (["graph", "show"], "Missing argument 'NAME'"),
    (["graph", "export", "x", "--format", "xml"], "Invalid value for '--format'"),
    (["graph", "import", "/nonexistent.yaml"], "cannot read graph file /nonexistent.yaml"),
])
def test_usage_and_validation_errors_exit_2_with_one_line(cli, args, expected):
    code, out, err = cli(*args)
    assert code == 2
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err


def test_a_bad_graph_file_lists_each_problem_and_writes_nothing(cli, tmp_path, db):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: g\nvertices:\n  - {name: a, script: x, timout: 3}\nedges: [[a, b]]\n")
    code, _, err = cli("graph", "import", str(bad))
    assert code == 2
    lines = err.splitlines()
    assert any("vertex 'a': unknown key 'timout'" in line for line in lines)
    assert any("edge a -> b: unknown vertex 'b'" in line for line in lines)
    assert all(line.startswith("pipeline-engine: error: ") for line in lines)
    assert service.list_graphs(db) == []


def test_sealed_graph_edit_and_unsealed_seal_are_refused(cli, example):
    cli("graph", "import", example("diamond.yaml"))
    code, _, err = cli("graph", "seal", "diamond")
    assert code == 2 and "check it before sealing" in err


def test_db_upgrade_reports_up_to_date(cli):
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and f"up to date ({migrate.head_revision()})" in out


def test_unreachable_database_exits_3_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--db", "postgresql://nobody@127.0.0.1:1/none", "graph", "list"])
    _, err = capsys.readouterr()
    assert exc.value.code == 3 and len(err.splitlines()) == 1 and "database error" in err


def _run(args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "pipeline_engine", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, timeout=60, **kwargs)


def test_the_sqlite_default_is_created_and_migrated_on_first_use(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path)}
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_ENGINE_")}
    result = subprocess.run([sys.executable, "-m", "pipeline_engine", "graph", "import", "examples/diamond.yaml",
                             "--seal"], capture_output=True, text=True, env={**env_clean, **env}, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pipeline_engine" / "pipeline_engine.db").exists()


def test_the_environment_variable_names_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/env.db"
    assert _run(["db", "upgrade"], env={"PIPELINE_ENGINE_DB": url}).returncode == 0
    result = _run(["graph", "import", "examples/multi-root.yaml"], env={"PIPELINE_ENGINE_DB": url})
    assert result.returncode == 0, result.stderr
    result = _run(["graph", "list", "--json"], env={"PIPELINE_ENGINE_DB": url})
    assert [g["name"] for g in json.loads(result.stdout)] == ["multi-root"]


@pytest.mark.parametrize("via", ["--db", "PIPELINE_ENGINE_DB"])
def test_a_sqlite_path_that_does_not_exist_is_created_only_by_db_upgrade(tmp_path, via):
    # Given a path with a typo (its directory does not exist either)
    path = tmp_path / "typo" / "jobs.db"
    url = f"sqlite:///{path}"

    def run(*args):
        if via == "--db":
            return _run(["--db", url, *args])
        return _run(list(args), env={"PIPELINE_ENGINE_DB": url})

    # When any command but `db upgrade` opens it: one line naming it and saying how to create
    # it, exit 2, and no file (nor directory) is made
    for args in (["runs", "list"], ["graph", "import", "examples/diamond.yaml"], ["worker"], ["recover"]):
        result = run(*args)
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stderr)
        assert result.stderr == (f"pipeline-engine: error: database {url} does not exist: create it with"
                                 f" `pipeline-engine --db {url} db upgrade`\n")
        assert not (tmp_path / "typo").exists()
    # `db upgrade` creates it (readable by its owner only), and then it works
    result = run("db", "upgrade")
    assert result.returncode == 0 and f"upgraded from empty to {migrate.head_revision()}" in result.stdout
    assert path.stat().st_mode & 0o777 == 0o600
    result = run("runs", "list", "--json")
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


@pytest.mark.parametrize("server", ["mariadb", "postgresql"])
def test_a_server_database_that_was_never_upgraded_says_so(server, request):
    # (SQLite, the embedded default, migrates itself on first use instead.)
    from conftest import backend_url_empty

    url = backend_url_empty(request, server)
    result = _run(["--db", url, "graph", "list"])
    assert result.returncode == 3
    assert "db upgrade" in result.stderr and len(result.stderr.splitlines()) == 1
    result = _run(["--db", url, "db", "upgrade"])
    assert result.returncode == 0 and f"upgraded from empty to {migrate.head_revision()}" in result.stdout
    result = _run(["--db", url, "graph", "list"])
    assert result.returncode == 0 and "no graphs" in result.stdout


def test_run_show_and_logs(cli, example, tmp_path):
    cli("graph", "import", example("sales-report.yaml"), "--seal")
    code, out, err = cli("run", "sales-report", "-p", f"workdir={tmp_path}", "-p", "rows=20",
                         "-p", "token=hunter2", "--workers", "2", "--no-input")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("run ") and "started" in first
    run_id = first.split()[1]
    assert re.fullmatch(rf"run {run_id} succeeded: 7 succeeded \(00:0\d elapsed\)", out.splitlines()[-1])
    # progress without a terminal: one line per ended attempt, on stderr
    assert sorted(line.split(":")[0].strip() for line in err.splitlines()) == sorted(
        ["prepare", "extract", "validate", "by_region", "total", "archive", "report"])
    code, out, _ = cli("runs", "show", run_id, "--json")
    shown = json.loads(out)
    assert {"id", "graph", "state", "tracks"} <= set(shown) and shown["state"] == "succeeded"
    assert {"vertex", "state", "attempt", "exit_code", "started_at", "finished_at"} <= set(shown["tracks"][0])
    code, out, _ = cli("logs", run_id, "report")
    assert code == 0 and "authenticated with a token of 7 characters" in out and "hunter2" not in out


def test_logs_prints_the_full_log_file_or_with_tail_the_database_tails(cli, tmp_path, log_dir):
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nvertices:\n  - {name: v, script: 'echo out; echo err >&2; exit 1', retries: 1}\n")
    cli("graph", "import", str(graph), "--seal")
    code, out, err = cli("run", "g")
    assert code == 1 and "v: attempt 1 failed" in err and "retrying" in err and "v: failed" in err
    run_id = out.split()[1]
    code, out, err = cli("logs", run_id, "v")
    assert code == 0 and out == "--- attempt 1 ---\nout\nerr\n--- attempt 2 ---\nout\nerr\n"
    logged = [os.path.join(d, f) for d, _, files in os.walk(log_dir) for f in files]
    assert len(logged) == 1 and logged[0].endswith(os.path.join(f"run-{run_id}", "v.log"))
    code, out, err = cli("logs", run_id, "v", "--tail")
    assert (code, out, err) == (0, "out\n", "err\n")
    code, _, err = cli("logs", run_id, "nope")
    assert code == 2 and "no vertex 'nope'" in err


def test_runs_list_newest_first_filtered_and_as_json(cli, tmp_path):
    for name, script in [("ok", "true"), ("bad", "false")]:
        f = tmp_path / f"{name}.yaml"
        f.write_text(f"name: {name}\nvertices:\n  - {{name: v, script: '{script}'}}\n")
        cli("graph", "import", str(f), "--seal")
    ids = [cli("run", g)[1].split()[1] for g in ["ok", "bad", "ok"]]
    code, out, _ = cli("runs", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [str(r["id"]) for r in listed] == ids[::-1]
    assert all(set(r) == {"id", "graph", "version", "name", "state", "started_at", "finished_at", "counts", "started_by",
                          "trigger", "schedule", "fire_at"} for r in listed)
    assert {(r["trigger"], r["schedule"], r["fire_at"]) for r in listed} == {("manual", None, None)}
    assert [(r["graph"], r["counts"]) for r in listed] == [("ok", {"succeeded": 1}), ("bad", {"failed": 1}),
                                                           ("ok", {"succeeded": 1})]
    code, out, _ = cli("runs", "list", "--graph", "ok", "--state", "succeeded", "--json")
    assert [str(r["id"]) for r in json.loads(out)] == [ids[2], ids[0]]
    code, out, _ = cli("runs", "list", "--state", "failed")
    assert code == 0 and out.splitlines()[0].split() == ["ID", "GRAPH", "VERSION", "NAME", "STATE", "DONE", "STARTED",
                                                       "FINISHED"]
    assert [line.split()[:6] for line in out.splitlines()[1:]] == [[ids[1], "bad", "1", "-", "failed", "1/1"]]
    assert json.loads(cli("runs", "list", "--limit", "1", "--json")[1])[0]["id"] == int(ids[2])
    assert [r["id"] for r in json.loads(cli("runs", "list", "--limit", "1", "--offset", "1", "--json")[1])] == [
        int(ids[1])]
    code, _, err = cli("runs", "list", "--graph", "nope")
    assert code == 2 and "graph 'nope' not found" in err
    code, _, err = cli("runs", "list", "--state", "done")
    assert code == 2 and "--state" in err


def test_a_failed_run_exits_1_and_a_missing_input_exits_2(cli, tmp_path, db):
    bad = tmp_path / "g.yaml"
    bad.write_text("name: g\nvertices:\n  - {name: a, script: 'exit 4'}\n  - {name: b, script: 'echo {n}', "
                   "inputs: {n: int}}\n")
    cli("graph", "import", str(bad), "--seal")
    code, _, err = cli("run", "g", "--no-input")
    assert code == 2 and "vertex 'b': input 'n' (int) is required" in err
    assert service.list_graphs(db)[0].name == "g"
    code, out, err = cli("run", "g", "-p", "n=1")
    assert code == 1 and "a: failed after 1 attempt(s): exit code 4" in err
    assert "failed: 1 failed, 1 succeeded" in out


def test_runs_show_pages_tracks_and_counts_the_whole_run_in_sql(cli, tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("name: g\nvertices:\n" + "".join(f"  - {{name: v{i}, script: '{'false' if i == 3 else 'true'}'}}\n"
                                                   for i in range(6)))
    cli("graph", "import", str(f), "--seal")
    run_id = cli("run", "g")[1].split()[1]
    code, out, _ = cli("runs", "show", run_id, "--limit", "2", "--offset", "2", "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["total"], shown["counts"]) == (6, {"succeeded": 5, "failed": 1})
    assert [t["vertex"] for t in shown["tracks"]] == ["v2", "v3"]
    code, out, _ = cli("runs", "show", run_id, "--limit", "2")
    assert "6 vertices: 1 failed, 5 succeeded" in out and "(vertices 1-2 of 6; --limit and --offset page)" in out
    code, out, _ = cli("runs", "show", run_id, "--state", "failed", "--json")
    assert [t["vertex"] for t in json.loads(out)["tracks"]] == ["v3"]
