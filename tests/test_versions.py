"""Graph versions: a name has versions 1, 2, 3..., only the newest may be a draft, runs use the
newest sealed one (or the one asked for), and run ids are never reused."""
import json
import os
from datetime import datetime, timezone

import pytest
import yaml
from sqlalchemy import select, text

from conftest import run_tracks
from pipeline_engine import migrate, service
from pipeline_engine.db import Database
from pipeline_engine.errors import GraphStatusError, NotFoundError, SealedGraphError
from pipeline_engine.models import Graph, Vertex

V1 = {"name": "etl", "description": "nightly", "vertices": [
    {"name": "extract", "script": "echo extract {day}", "inputs": {"day": "str"}},
    {"name": "load", "script": "echo load", "timeout": 30}],
    "edges": [["extract", "load"]]}


def v2() -> dict:
    """V1 with a changed script, a new input, a new timeout, a new vertex and other edges."""
    return {"name": "etl", "description": "nightly", "vertices": [
        {"name": "extract", "script": "echo extract {day}\necho rows {rows}",
         "inputs": {"day": "str", "rows": {"type": "int", "default": 10}}},
        {"name": "load", "script": "echo load", "timeout": 60},
        {"name": "report", "script": "echo report"}],
        "edges": [["extract", "load"], ["load", "report"]]}


def write(tmp_path, spec: dict, name: str = "etl.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def test_the_python_api_edits_the_newest_draft_and_new_version_starts_one(db, unchanged):
    service.import_graph(db, V1, seal=True)
    with unchanged():
        with pytest.raises(SealedGraphError, match=r"graph 'etl' version 1 is sealed and cannot change: start version 2"
                                                   r" with service.new_version\(db, 'etl'\)"):
            service.add_vertex(db, "etl", "report", "echo report")
        with pytest.raises(NotFoundError, match="graph 'nope' not found"):
            service.new_version(db, "nope")
    info = service.new_version(db, "etl")
    assert (info.version, info.status, info.vertices, info.edges, info.sealed_version) == (2, "draft", 2, 1, 1)
    with unchanged(), pytest.raises(GraphStatusError, match="graph 'etl' version 2 is a draft, not sealed: edit it"):
        service.new_version(db, "etl")
    service.add_vertex(db, "etl", "report", "echo report")
    service.add_edge(db, "etl", "load", "report")
    assert len(service.show_graph(db, "etl", version=1).spec.vertices) == 2  # the sealed version never changes
    # runs use the newest sealed version while the next one is a draft
    assert service.start_run(db, "etl", {"day": "2026-12-01"}, detach=True).version == 1
    assert service.check_graph(db, "etl").version == 2
    assert service.seal_graph(db, "etl").version == 2
    run = service.start_run(db, "etl", {"day": "2026-12-01"}, detach=True)
    assert (run.version, sorted(run.pending + run.waiting)) == (2, ["extract", "load", "report"])
    old = service.start_run(db, "etl", {"day": "2026-12-01"}, detach=True, version=1)
    assert (old.version, sorted(old.pending + old.waiting)) == (1, ["extract", "load"])
    assert service.show_run(db, old.id).version == 1
    assert [(r.id, r.version) for r in service.list_runs(db, graph="etl")] == [(old.id, 1), (run.id, 2), (1, 1)]


def test_a_draft_version_cannot_run_and_a_missing_version_is_named(db, unchanged):
    service.import_graph(db, V1)
    with unchanged():
        with pytest.raises(GraphStatusError, match="graph 'etl' has no sealed version"
                                                   r" \(graph 'etl' version 1 is a draft\)"):
            service.start_run(db, "etl", {"day": "2026-12-01"})
    service.check_graph(db, "etl")
    service.seal_graph(db, "etl")
    service.import_graph(db, v2())
    with unchanged():
        with pytest.raises(GraphStatusError, match="graph 'etl' version 2 is a draft: only sealed versions run"):
            service.start_run(db, "etl", {"day": "2026-12-01"}, version=2)
        with pytest.raises(NotFoundError, match=r"graph 'etl' has no version 7 \(it has versions 1, 2\)"):
            service.start_run(db, "etl", {"day": "2026-12-01"}, version=7)
        with pytest.raises(NotFoundError, match=r"graph 'etl' has no version 3"):
            service.show_graph(db, "etl", version=3)


def test_graph_import_makes_versions_replaces_the_draft_and_skips_an_identical_file(cli, db, tmp_path):
    first = write(tmp_path, V1)
    code, out, _ = cli("graph", "import", first, "--seal")
    assert (code, out) == (0, "graph 'etl' version 1 imported: 2 vertices, 1 edge, sealed\n")
    # the same file again: nothing is created
    before = service.list_versions(db, "etl")
    code, out, _ = cli("graph", "import", first, "--seal")
    assert (code, out) == (0, f"graph 'etl' version 1 is sealed and identical to {first}: nothing imported\n")
    assert service.list_versions(db, "etl") == before
    # key order and vertex order do not make a file different
    reordered = {**V1, "vertices": V1["vertices"][::-1]}
    code, out, _ = cli("graph", "import", write(tmp_path, reordered, "reordered.yaml"))
    assert code == 0 and "nothing imported" in out
    # a changed file: the next version, a draft
    second = v2()
    code, out, _ = cli("graph", "import", write(tmp_path, second, "v2.yaml"))
    assert (code, out) == (0, "graph 'etl' version 2 imported: 3 vertices, 2 edges, draft\n")
    # changed again while version 2 is a draft: version 2 is replaced, not a third made
    second["vertices"][2]["script"] = "echo final report"
    code, out, _ = cli("graph", "import", write(tmp_path, second, "v2b.yaml"), "--check")
    assert (code, out) == (0, "graph 'etl' version 2 imported: 3 vertices, 2 edges, checked\n")
    assert service.show_graph(db, "etl").spec.vertices[2].script == "echo final report"
    code, out, _ = cli("graph", "versions", "etl", "--json")
    listed = json.loads(out)
    assert code == 0 and [(v["version"], v["status"], v["runs"]) for v in listed] == [(1, "sealed", 0),
                                                                                     (2, "checked", 0)]
    assert all(set(v) == {"version", "status", "created_at", "sealed_at", "runs"} for v in listed)
    assert listed[0]["sealed_at"] is not None and listed[1]["sealed_at"] is None
    code, out, _ = cli("graph", "versions", "etl")
    assert code == 0 and out.splitlines()[0].split() == ["VERSION", "STATUS", "CREATED", "SEALED", "RUNS"]
    code, out, err = cli("graph", "versions", "nope")
    assert code == 2 and "graph 'nope' not found" in err


def test_show_export_list_and_delete_take_a_version(cli, db, tmp_path):
    cli("graph", "import", write(tmp_path, V1), "--seal")
    cli("graph", "import", write(tmp_path, v2(), "v2.yaml"))
    code, out, _ = cli("graph", "show", "etl", "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["version"], shown["status"], shown["sealed_version"], len(shown["vertices"])) == (
        2, "draft", 1, 3)
    code, out, _ = cli("graph", "show", "etl", "--version", "1", "--json")
    assert (json.loads(out)["version"], len(json.loads(out)["vertices"])) == (1, 2)
    code, out, _ = cli("graph", "show", "etl", "--version", "1")
    assert code == 0 and "version:     1 (runs use version 1)" in out
    code, out, _ = cli("graph", "export", "etl", "--version", "1")
    assert code == 0 and [(v["name"], v["script"]) for v in yaml.safe_load(out)["vertices"]] == [
        (v["name"], v["script"]) for v in V1["vertices"]]
    code, out, _ = cli("graph", "export", "etl")
    assert [v["name"] for v in yaml.safe_load(out)["vertices"]] == ["extract", "load", "report"]
    code, out, _ = cli("graph", "list", "--json")
    assert [(g["name"], g["version"], g["status"], g["sealed_version"]) for g in json.loads(out)] == [
        ("etl", 2, "draft", 1)]
    code, out, _ = cli("graph", "list")
    assert out.splitlines()[1].split()[:5] == ["etl", "2", "draft", "v1", "3"]
    code, out, err = cli("graph", "export", "etl", "--version", "9")
    assert code == 2 and "graph 'etl' has no version 9 (it has versions 1, 2)" in err

    # deleting a version: only it goes; a run refuses as for a whole graph
    run = service.start_run(db, "etl", {"day": "2026-12-01"}, detach=True)
    code, out, err = cli("graph", "delete", "etl", "--version", "1")
    assert code != 0 and "graph 'etl' version 1 has 1 running run(s)" in err
    service.cancel_run(db, run.id)
    code, out, err = cli("graph", "delete", "etl", "--version", "1")
    assert code != 0 and "graph 'etl' version 1 has 1 run(s); delete them with it (--with-runs)" in err
    code, out, _ = cli("graph", "delete", "etl", "--version", "2")
    assert (code, out) == (0, "graph 'etl' version 2 deleted: 1 version, 3 vertices, 2 edges, 0 runs, 0 tracks\n")
    assert [v.version for v in service.list_versions(db, "etl")] == [1]
    code, out, _ = cli("graph", "delete", "etl", "--with-runs")
    assert (code, out) == (0, "graph 'etl' deleted: 1 version, 2 vertices, 1 edge, 1 run, 2 tracks\n")


def test_graph_diff_names_what_changed(cli, db, tmp_path):
    cli("graph", "import", write(tmp_path, V1), "--seal")
    cli("graph", "import", write(tmp_path, v2(), "v2.yaml"))
    code, out, _ = cli("graph", "diff", "etl", "1", "2")
    assert code == 0
    assert out.splitlines() == [
        "graph 'etl': version 1 -> version 2",
        "+ vertex 'report'",
        "~ vertex 'extract'",
        '    + input {rows}: {"type": "int", "default": 10}',
        "    script:",
        "      @@ -1 +1,2 @@",
        "       echo extract {day}",
        "      +echo rows {rows}",
        "~ vertex 'load'",
        "    timeout: 30 -> 60",
        "+ edge load -> report",
    ]
    code, out, _ = cli("graph", "diff", "etl", "2", "1", "--json")
    change = json.loads(out)
    assert (change["vertices_removed"], change["edges_removed"], change["vertices_added"]) == (
        ["report"], [["load", "report"]], [])
    assert change["vertices_changed"][1] == {"vertex": "load", "fields": {"timeout": {"before": 60, "after": 30}},
                                             "inputs_added": {}, "inputs_removed": {}, "inputs_changed": {},
                                             "script": ""}
    code, out, _ = cli("graph", "diff", "etl", "1", "1")
    assert out.splitlines()[1:] == ["no differences"]
    code, _, err = cli("graph", "diff", "etl", "1", "5")
    assert code == 2 and "graph 'etl' has no version 5" in err


def test_run_version_and_runs_list_show_the_version(cli, db, tmp_path):
    cli("graph", "import", write(tmp_path, V1), "--seal")
    cli("graph", "import", write(tmp_path, v2(), "v2.yaml"), "--seal")
    code, out, _ = cli("run", "etl", "-p", "day=2026-12-01")
    assert code == 0 and out.startswith("run 1 of graph 'etl' started: 3 vertices (version 2)")
    code, out, _ = cli("run", "etl", "--version", "1", "-p", "day=2026-12-01")
    assert code == 0 and out.startswith("run 2 of graph 'etl' started: 2 vertices (version 1)")
    code, out, _ = cli("runs", "list", "--json")
    assert [(r["id"], r["version"]) for r in json.loads(out)] == [(2, 1), (1, 2)]
    code, out, _ = cli("runs", "list")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [["2", "etl", "1"], ["1", "etl", "2"]]
    code, out, _ = cli("runs", "show", "2", "--json")
    assert json.loads(out)["version"] == 1
    code, out, _ = cli("runs", "show", "2")
    assert out.startswith("run 2 of graph 'etl' version 1: succeeded")
    code, _, err = cli("run", "etl", "--version", "3", "-p", "day=2026-12-01")
    assert code == 2 and "graph 'etl' has no version 3" in err
    code, out, _ = cli("graph", "versions", "etl", "--json")
    assert [v["runs"] for v in json.loads(out)] == [1, 1]


def test_duration_history_follows_a_vertex_name_across_versions(db):
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true"}]}, seal=True)
    run = service.start_run(db, "g", detach=True)
    with db.transaction() as s:  # as a worker records a finished attempt
        s.execute(text("UPDATE track SET state = 'succeeded', duration = 7.5 WHERE pipeline_id = :p"), {"p": run.id})
        s.execute(text("UPDATE pipeline SET state = 'succeeded' WHERE id = :p"), {"p": run.id})
    service.import_graph(db, {"name": "g", "vertices": [{"name": "a", "script": "true # v2"},
                                                        {"name": "b", "script": "true"}],
                              "edges": [["a", "b"]]}, seal=True)
    second = service.start_run(db, "g", detach=True)
    assert second.version == 2
    tracks = run_tracks(db, second.id)
    # a: its own 7.5 s from version 1 plus b's default 1 s; b: no history yet
    assert (tracks["a"].priority, tracks["b"].priority) == (8.5, service.DEFAULT_DURATION)


def test_rename_and_copy_cover_the_versions(db):
    service.import_graph(db, V1, seal=True)
    service.import_graph(db, v2(), seal=True)
    service.rename_graph(db, "etl", "nightly")
    assert [v.version for v in service.list_versions(db, "nightly")] == [1, 2]
    info = service.copy_graph(db, "nightly", "copy", version=1)
    assert (info.name, info.version, info.status, info.vertices) == ("copy", 1, "draft", 2)


# --- run ids, log files, migration ----------------------------------------------------------

def _run_ids(cli, times: int) -> list[int]:
    return [int(cli("run", "g")[1].split()[1]) for _ in range(times)]


def test_run_ids_are_never_reused_and_a_new_run_never_shows_an_old_log(cli, db, tmp_path, log_dir):
    spec = write(tmp_path, {"name": "g", "vertices": [{"name": "a", "script": "echo fresh"}]})
    cli("graph", "import", spec, "--seal")
    first = _run_ids(cli, 3)
    assert cli("prune", "--older-than", "0")[0] == 0
    second = _run_ids(cli, 1)
    assert second[0] > max(first)
    assert cli("graph", "delete", "g", "--with-runs")[0] == 0
    cli("graph", "import", spec, "--seal")
    # whatever a run id's directory held before (a restored backup, a database made anew),
    # a run's first attempt starts its log file empty
    logs = os.path.join(log_dir, db.key)
    for n in range(1, 30):
        os.makedirs(os.path.join(logs, f"run-{n}"), exist_ok=True)
        with open(os.path.join(logs, f"run-{n}", "a.log"), "w") as f:
            f.write("output of a deleted run\n")
    third = _run_ids(cli, 1)
    assert third[0] > max(second)
    code, out, _ = cli("logs", str(third[0]), "a")
    assert code == 0 and "fresh" in out and "deleted run" not in out


@pytest.fixture
def empty_url(request, backend, tmp_path):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/old.db"
    from conftest import backend_url_empty

    return backend_url_empty(request, backend)


def test_an_older_database_migrates_every_graph_to_version_1(empty_url):
    old = Database(empty_url, auto_migrate=False)
    stamp = datetime(2026, 11, 1, tzinfo=timezone.utc)
    try:
        with old.engine.connect() as conn:
            with conn.begin():
                migrate.upgrade(conn, "0004")
            with conn.begin():
                for name in ("a", "b"):
                    conn.execute(text("INSERT INTO graph (name, description, status, created_at, updated_at,"
                                      " sealed_at) VALUES (:n, '', 'sealed', :t, :t, :t)"), {"n": name, "t": stamp})
                    gid = conn.execute(text("SELECT id FROM graph WHERE name = :n"), {"n": name}).scalar()
                    conn.execute(text("INSERT INTO vertex (graph_id, name, position, script, description,"
                                      " inputs, retries) VALUES (:g, 'v', 1, 'echo v', '', '{}', 0)"), {"g": gid})
                ga = conn.execute(text("SELECT id FROM graph WHERE name = 'a'")).scalar()
                va = conn.execute(text("SELECT id FROM vertex WHERE graph_id = :g"), {"g": ga}).scalar()
                for _ in range(5):
                    conn.execute(text("INSERT INTO pipeline (graph_id, state, params, created_at, secret_inputs)"
                                      " VALUES (:g, 'succeeded', '{}', :t, false)"), {"g": ga, "t": stamp})
                run = conn.execute(text("SELECT max(id) FROM pipeline")).scalar()
                conn.execute(text("DELETE FROM pipeline WHERE id < :r"), {"r": run})
                conn.execute(text("INSERT INTO track (pipeline_id, vertex_id, state, attempt, max_attempts,"
                                  " waiting_on, priority, inputs, script, stdout, stderr, duration) VALUES"
                                  " (:r, :v, 'succeeded', 1, 1, 0, 1, '{}', 'echo v', 'v', '', 2.0)"),
                             {"r": run, "v": va})
        assert old.upgrade() == ("0004", migrate.head_revision())
        with old.transaction(write=False) as s:
            assert s.execute(select(Graph.name, Graph.version, Graph.status)).all() == [
                ("a", 1, "sealed"), ("b", 1, "sealed")]
            assert s.scalars(select(Vertex.name).join(Graph, Graph.id == Vertex.graph_id)).all() == ["v", "v"]
        assert [(r.id, r.version, r.state) for r in service.list_runs(old)] == [(run, 1, "succeeded")]
        assert run_tracks(old, run)["v"].duration == 2.0
        # and the next version follows
        info = service.import_graph(old, {"name": "a", "vertices": [{"name": "v", "script": "echo v2"}]}, seal=True)
        assert info.version == 2
        new_run = service.start_run(old, "a", detach=True)
        assert new_run.id > run and run_tracks(old, new_run.id)["v"].priority == 2.0
        if old.dialect == "sqlite":  # the rebuilt tables kept their foreign keys, and they are on
            with old.engine.connect() as conn:
                assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'pipeline'")).scalar()
                assert "AUTOINCREMENT" in ddl and "fk_pipeline_graph_id_graph" in ddl
    finally:
        old.dispose()
