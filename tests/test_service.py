"""The Python service API on every backend: define, check, seal, copy, import, export."""
import threading

import pytest
from conftest import snapshot
from sqlalchemy import text

from pipeline_engine import graphfile, service
from pipeline_engine.errors import (
    AlreadyExistsError,
    CycleError,
    GraphError,
    GraphFileError,
    GraphStatusError,
    InputSchemaError,
    NotFoundError,
    SealedGraphError,
    SecretsNeedOwnerError,
)


def make_diamond(db, name="g"):
    service.create_graph(db, name, "a diamond")
    for v in "ABCD":
        service.add_vertex(db, name, v, f"echo {v}")
    for t, h in [("A", "B"), ("A", "C"), ("C", "B"), ("B", "D")]:
        service.add_edge(db, name, t, h)


# --- graphs ---------------------------------------------------------------------------

def test_create_list_show_rename_delete(db):
    info = service.create_graph(db, "etl", "nightly load")
    assert (info.name, info.status, info.vertices, info.edges) == ("etl", "draft", 0, 0)
    service.create_graph(db, "backup")
    assert [g.name for g in service.list_graphs(db)] == ["backup", "etl"]
    service.rename_graph(db, "etl", "etl-v1")
    assert service.show_graph(db, "etl-v1").info.description == "nightly load"
    with pytest.raises(NotFoundError, match="graph 'etl' not found"):
        service.show_graph(db, "etl")
    service.delete_graph(db, "etl-v1")
    assert [g.name for g in service.list_graphs(db)] == ["backup"]


def test_graph_names_are_unique_and_case_sensitive(db, unchanged):
    service.create_graph(db, "etl")
    service.create_graph(db, "ETL")  # a different graph on every backend (MariaDB too)
    with unchanged():
        with pytest.raises(AlreadyExistsError, match="graph 'etl' already exists"):
            service.create_graph(db, "etl")
        with pytest.raises(AlreadyExistsError, match="graph 'ETL' already exists"):
            service.rename_graph(db, "etl", "ETL")


@pytest.mark.parametrize("bad", ["", "-x", ".hidden", "a b", "a/b", "x" * 201, "é"])
def test_bad_graph_names_are_refused(db, unchanged, bad):
    with unchanged(), pytest.raises(GraphError, match="graph name"):
        service.create_graph(db, bad)


def test_list_counts_vertices_and_edges(db):
    make_diamond(db)
    service.create_graph(db, "empty")
    counts = {g.name: (g.vertices, g.edges) for g in service.list_graphs(db)}
    assert counts == {"g": (4, 4), "empty": (0, 0)}


# --- vertices and edges -----------------------------------------------------------------

def test_add_update_remove_vertex(db):
    service.create_graph(db, "g")
    service.add_vertex(db, "g", "ping", "ping -c 1 {ip}", description="reach the host",
                       inputs={"ip": {"type": "ip", "default": "127.0.0.1"}}, timeout=30, retries=1)
    service.add_vertex(db, "g", "report", "echo done")
    service.add_edge(db, "g", "ping", "report")
    v = service.show_graph(db, "g").spec.vertices[0]
    assert (v.name, v.timeout, v.retries, v.inputs) == ("ping", 30.0, 1, {"ip": {"type": "ip", "default": "127.0.0.1"}})

    service.update_vertex(db, "g", "ping", script="ping -c 2 {ip}", timeout=None, new_name="probe")
    spec = service.show_graph(db, "g").spec
    probe = spec.vertices[0]
    assert (probe.name, probe.script, probe.timeout, probe.retries) == ("probe", "ping -c 2 {ip}", None, 1)
    assert spec.edges == (("probe", "report"),)  # edges follow the renamed vertex

    service.remove_vertex(db, "g", "probe")
    spec = service.show_graph(db, "g").spec
    assert [v.name for v in spec.vertices] == ["report"] and spec.edges == ()


def test_vertex_names_unique_within_a_graph_but_not_across_graphs(db, unchanged):
    service.create_graph(db, "one")
    service.create_graph(db, "two")
    service.add_vertex(db, "one", "a", "true")
    service.add_vertex(db, "two", "a", "true")
    service.add_vertex(db, "one", "A", "true")  # case matters everywhere
    service.add_vertex(db, "one", "b", "true")
    with unchanged():
        with pytest.raises(AlreadyExistsError, match="graph 'one': vertex 'a' already exists"):
            service.add_vertex(db, "one", "a", "false")
        with pytest.raises(AlreadyExistsError, match="cannot rename vertex 'b': vertex 'a' already exists"):
            service.update_vertex(db, "one", "b", new_name="a")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "bad name"}, "vertex name 'bad name' is not valid"),
    ({"name": "a.b"}, "vertex name 'a.b' is not valid"),
    ({"script": "   "}, "vertex 'v': script must be a non-empty string"),
    ({"timeout": 0}, "vertex 'v': timeout must be a positive number"),
    ({"timeout": "10"}, "vertex 'v': timeout must be a positive number"),
    ({"retries": -1}, "vertex 'v': retries must be an integer"),
    ({"retries": 1.5}, "vertex 'v': retries must be an integer"),
])
def test_bad_vertices_are_refused_naming_the_vertex(db, unchanged, kwargs, message):
    service.create_graph(db, "g")
    args = {"name": "v", "script": "echo hi", **kwargs}
    with unchanged(), pytest.raises(GraphError) as exc:
        service.add_vertex(db, "g", args.pop("name"), args.pop("script"), **args)
    assert message in str(exc.value)


@pytest.mark.parametrize("inputs, words", [
    ({"x": {"type": "ipv9"}}, ["'v'", "'x'", "ipv9"]),
    ({"x": {"type": "int", "default": "many"}}, ["'v'", "'x'", "int"]),
    ({"x": {"type": "choice"}}, ["'v'", "'x'", "choices"]),
    ({"x": {"type": "str", "colour": "red"}}, ["'v'", "'x'", "colour"]),
    ({"x": {"type": "secret", "default": "hunter2"}}, ["'v'", "'x'", "secret"]),
])
def test_bad_input_schemas_are_refused_naming_vertex_and_input(db, unchanged, inputs, words):
    service.create_graph(db, "g")
    with unchanged(), pytest.raises(InputSchemaError) as exc:
        service.add_vertex(db, "g", "v", "echo {x}", inputs=inputs)
    for word in words:
        assert word in str(exc.value)


def test_edges_refused_when_unknown_self_or_duplicate(db, unchanged):
    service.create_graph(db, "g")
    service.add_vertex(db, "g", "a", "true")
    service.add_vertex(db, "g", "b", "true")
    service.add_edge(db, "g", "a", "b")
    with unchanged():
        with pytest.raises(NotFoundError, match=r"edge a -> nope: unknown vertex 'nope'"):
            service.add_edge(db, "g", "a", "nope")
        with pytest.raises(GraphError, match="edge a -> a: a vertex cannot depend on itself"):
            service.add_edge(db, "g", "a", "a")
        with pytest.raises(AlreadyExistsError, match="edge a -> b already exists"):
            service.add_edge(db, "g", "a", "b")
        with pytest.raises(NotFoundError, match="edge b -> a not found"):
            service.remove_edge(db, "g", "b", "a")
    service.remove_edge(db, "g", "a", "b")
    assert service.show_graph(db, "g").spec.edges == ()


# --- the database enforces it too ----------------------------------------------------------

def _ids(db):
    with db.engine.connect() as conn:
        return {(g, v): i for g, v, i in conn.execute(text(
            "SELECT graph.name, vertex.name, vertex.id FROM vertex JOIN graph ON graph.id = vertex.graph_id"))}, \
            dict(conn.execute(text("SELECT name, id FROM graph")).all())


def _raw_fails(db, sql, **params):
    with pytest.raises(Exception) as exc:
        with db.engine.begin() as conn:
            conn.execute(text(sql), params)
    assert "IntegrityError" in type(exc.value).__name__ or "Integrity" in repr(exc.value) \
        or "CHECK" in str(exc.value).upper() or "constraint" in str(exc.value).lower()


def test_database_constraints_hold_without_the_service(db, unchanged):
    make_diamond(db, "g")
    make_diamond(db, "h")
    vertex, graph = _ids(db)
    with unchanged():
        _raw_fails(db, "INSERT INTO graph (name, description, status, created_at, updated_at)"
                       " VALUES ('g', '', 'draft', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        _raw_fails(db, "INSERT INTO graph (name, description, status, created_at, updated_at)"
                       " VALUES ('new', '', 'frozen', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        _raw_fails(db, "INSERT INTO vertex (graph_id, name, position, script, description, inputs, retries)"
                       " VALUES (:g, 'A', 9, 'true', '', '{}', 0)", g=graph["g"])
        _raw_fails(db, "INSERT INTO vertex (graph_id, name, position, script, description, inputs, retries)"
                       " VALUES (:g, 'Z', 9, 'true', '', '{}', -1)", g=graph["g"])
        # an edge to a vertex of another graph
        _raw_fails(db, "INSERT INTO edge (graph_id, tail_id, head_id) VALUES (:g, :t, :h)",
                   g=graph["g"], t=vertex[("g", "A")], h=vertex[("h", "D")])
        # a self loop
        _raw_fails(db, "INSERT INTO edge (graph_id, tail_id, head_id) VALUES (:g, :t, :t)",
                   g=graph["g"], t=vertex[("g", "A")])
        # the same edge twice
        _raw_fails(db, "INSERT INTO edge (graph_id, tail_id, head_id) VALUES (:g, :t, :h)",
                   g=graph["g"], t=vertex[("g", "A")], h=vertex[("g", "B")])


def test_deleting_a_graph_removes_its_vertices_and_edges_only(db):
    make_diamond(db, "g")
    make_diamond(db, "h")
    service.delete_graph(db, "g")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM vertex")).scalar() == 4
        assert conn.execute(text("SELECT COUNT(*) FROM edge")).scalar() == 4
    assert len(service.show_graph(db, "h").spec.edges) == 4


def test_a_graph_with_runs_is_kept_unless_asked(db, unchanged):
    make_diamond(db, "g")
    with db.engine.begin() as conn:
        gid = conn.execute(text("SELECT id FROM graph WHERE name = 'g'")).scalar()
        conn.execute(text("INSERT INTO pipeline (graph_id, state, params, created_at)"
                          " VALUES (:g, 'succeeded', '{}', CURRENT_TIMESTAMP)"), {"g": gid})
    with unchanged(), pytest.raises(GraphStatusError, match="graph 'g' has 1 run"):
        service.delete_graph(db, "g")
    service.delete_graph(db, "g", with_runs=True)
    assert service.list_graphs(db) == []


# --- check, seal, copy ------------------------------------------------------------------------

def test_check_orders_a_dag_and_marks_it_checked(db):
    make_diamond(db)
    result = service.check_graph(db, "g")
    assert result.order == ["A", "C", "B", "D"] and result.status == "checked"
    assert service.show_graph(db, "g").info.status == "checked"


def test_check_reports_the_cycle_by_vertex_names_and_changes_nothing(db, unchanged):
    service.import_graph(db, graphfile.load("examples/cycle.yaml"))
    with unchanged(), pytest.raises(CycleError) as exc:
        service.check_graph(db, "cycle")
    assert str(exc.value) == "graph 'cycle': cycle: A -> C -> B -> A"
    assert exc.value.cycle == ["A", "C", "B", "A"]


@pytest.mark.parametrize("vertices, edges", [
    (["solo"], []),
    (["x", "y", "z"], []),
    (["a", "b", "c", "m"], [("a", "m"), ("b", "m"), ("c", "m")]),
    (["r", "x", "y"], [("r", "x"), ("r", "y")]),
])
def test_single_isolated_multi_root_multi_sink_graphs_check(db, vertices, edges):
    service.create_graph(db, "g")
    for v in vertices:
        service.add_vertex(db, "g", v, "true")
    for t, h in edges:
        service.add_edge(db, "g", t, h)
    assert sorted(service.check_graph(db, "g").order) == sorted(vertices)


def test_check_warns_about_words_that_name_no_input(db):
    service.create_graph(db, "g")
    service.add_vertex(db, "g", "v", "echo {who} ${HOME} {a,b}; awk '{print $1}' </dev/null",
                       inputs={"name": {"type": "str", "default": "x"}})
    result = service.check_graph(db, "g")
    assert result.warnings == ["vertex 'v': {who} names no input of the vertex and stays as written"]


def test_any_change_makes_a_checked_graph_a_draft(db):
    make_diamond(db)
    changes = [
        lambda: service.add_vertex(db, "g", "E", "true"),
        lambda: service.add_edge(db, "g", "D", "E"),
        lambda: service.update_vertex(db, "g", "E", script="false"),
        lambda: service.remove_edge(db, "g", "D", "E"),
        lambda: service.remove_vertex(db, "g", "E"),
    ]
    for change in changes:
        service.check_graph(db, "g")
        assert service.show_graph(db, "g").info.status == "checked"
        change()
        assert service.show_graph(db, "g").info.status == "draft"


def test_only_a_checked_graph_can_be_sealed(db, unchanged):
    make_diamond(db)
    with unchanged(), pytest.raises(GraphStatusError, match="graph 'g' version 1 is a draft: check it before sealing"):
        service.seal_graph(db, "g")
    service.check_graph(db, "g")
    info = service.seal_graph(db, "g")
    assert info.status == "sealed" and info.sealed_at is not None
    with pytest.raises(SealedGraphError, match="already sealed"):
        service.seal_graph(db, "g")


def test_a_sealed_graph_never_changes(db, unchanged):
    make_diamond(db)
    service.check_graph(db, "g")
    service.seal_graph(db, "g")
    attempts = [
        lambda: service.add_vertex(db, "g", "E", "true"),
        lambda: service.update_vertex(db, "g", "A", script="rm -rf /"),
        lambda: service.remove_vertex(db, "g", "A"),
        lambda: service.add_edge(db, "g", "A", "D"),
        lambda: service.remove_edge(db, "g", "A", "B"),
    ]
    with unchanged():
        for attempt in attempts:
            with pytest.raises(SealedGraphError, match=r"graph 'g' version 1 is sealed and cannot change: start version 2 with service.new_version\(db, 'g'\)"):
                attempt()
        assert service.check_graph(db, "g").status == "sealed"


def test_copy_gives_an_editable_draft_with_the_same_definition(db):
    make_diamond(db)
    service.check_graph(db, "g")
    service.seal_graph(db, "g")
    info = service.copy_graph(db, "g", "g2")
    assert (info.status, info.vertices, info.edges) == ("draft", 4, 4)
    original, copy = service.show_graph(db, "g").spec, service.show_graph(db, "g2").spec
    assert copy.vertices == original.vertices and copy.edges == original.edges
    service.add_vertex(db, "g2", "E", "true")
    assert len(service.show_graph(db, "g").spec.vertices) == 4
    with pytest.raises(AlreadyExistsError):
        service.copy_graph(db, "g", "g2")


# --- import and export -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["diamond", "multi-sink", "multi-root", "ping-hosts", "sales-report", "cycle"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_imports_to_the_same_graph(db, example, name, fmt):
    service.import_graph(db, example(f"{name}.yaml"))
    text_out = service.export_graph(db, name, fmt)
    again = graphfile.loads(text_out, fmt)
    service.import_graph(db, again, name="again")
    assert service.show_graph(db, "again").spec.vertices == service.show_graph(db, name).spec.vertices
    assert service.show_graph(db, "again").spec.edges == service.show_graph(db, name).spec.edges
    exported_again = graphfile.parse(service.export_graph(db, "again", fmt), fmt)
    assert {**exported_again, "name": name} == graphfile.parse(text_out, fmt)


def test_import_with_check_and_seal(db, example):
    info = service.import_graph(db, example("sales-report.yaml"), seal=True)
    assert info.status == "sealed"
    info = service.import_graph(db, example("diamond.yaml"), check=True)
    assert info.status == "checked"


def test_import_of_a_cycle_with_check_writes_nothing(db, example, unchanged):
    with unchanged(), pytest.raises(CycleError, match="cycle: A -> C -> B -> A"):
        service.import_graph(db, example("cycle.yaml"), seal=True)
    service.import_graph(db, example("cycle.yaml"))  # as a draft it is fine
    assert service.show_graph(db, "cycle").info.status == "draft"


def test_import_refuses_bad_files(db, example, tmp_path, unchanged):
    service.import_graph(db, example("diamond.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: other\nvertices:\n  - {name: a, script: 'true'}\n  - {name: a, script: 'true'}\n"
                   "edges:\n  - [a, ghost]\n")
    with unchanged():
        with pytest.raises(GraphFileError) as exc:
            service.import_graph(db, str(bad))
    assert "vertex 'a' is declared twice" in str(exc.value)
    assert "edge a -> ghost: unknown vertex 'ghost'" in str(exc.value)


def test_a_large_graph_imports_in_bulk(db):
    n = 2000
    data = {"name": "big", "vertices": [{"name": f"v{i}", "script": "true"} for i in range(n)],
            "edges": [[f"v{i}", f"v{i + 1}"] for i in range(n - 1)]}
    info = service.import_graph(db, data, seal=True)
    assert (info.vertices, info.edges, info.status) == (n, n - 1, "sealed")
    assert service.check_graph(db, "big").order == [f"v{i}" for i in range(n)]


def _planned_rows(db, sql: str) -> float:
    with db.engine.connect() as conn:
        return conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()[0]["Plan"]["Plan Rows"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_bulk_insert_refreshes_postgresqls_statistics(db, monkeypatch):
    # Until autovacuum comes (a minute or more), PostgreSQL would plan a just-started big run's
    # reads as if the run had a handful of tracks (its counts sorted on disk: 190 ms, not 30)
    monkeypatch.setattr(service._base, "BULK_ROWS", 300)
    n = 400
    service.import_graph(db, {"name": "big", "vertices": [{"name": f"v{i}", "script": "true"} for i in range(n)]},
                         seal=True)
    with db.engine.connect() as conn:
        graph = conn.execute(text("SELECT id FROM graph WHERE name = 'big'")).scalar_one()
    assert _planned_rows(db, f"SELECT * FROM vertex WHERE graph_id = {graph}") > n / 2
    run = service.start_run(db, "big", detach=True).id
    assert _planned_rows(db, f"SELECT * FROM track WHERE pipeline_id = {run}") > n / 2


@pytest.mark.parametrize("backend", ["postgresql"])
def test_statistics_that_cannot_be_refreshed_now_do_not_hold_up_the_start(db, monkeypatch):
    monkeypatch.setattr(service._base, "BULK_ROWS", 300)
    service.import_graph(db, {"name": "big", "vertices": [{"name": f"v{i}", "script": "true"} for i in range(400)]},
                         seal=True)
    started = []
    with db.engine.connect() as holder:  # what autovacuum holds while it works on the table
        holder.execute(text("LOCK TABLE track IN SHARE UPDATE EXCLUSIVE MODE"))
        starting = threading.Thread(target=lambda: started.append(service.start_run(db, "big", detach=True).id))
        starting.start()
        starting.join(timeout=10)
        held = starting.is_alive()
        holder.rollback()  # (a start that waits for the lock ends now)
    starting.join()
    assert not held, "the start waited for the table's maintenance lock"
    run, = started
    assert service.show_run(db, run, limit=0).total == 400  # started, and committed
    assert _planned_rows(db, f"SELECT * FROM track WHERE pipeline_id = {run}") < 100  # not refreshed


def test_a_runs_tracks_come_in_declaration_order_after_edits_and_new_versions(db):
    # runs show pages by vertex id (an index walk): ids must follow declaration order
    names = [f"v{i:03d}" for i in range(150)][::-1]  # not alphabetical: declaration order is not name order
    service.import_graph(db, {"name": "g", "vertices": [{"name": n, "script": "true"} for n in names]})
    service.update_vertex(db, "g", names[10], new_name="renamed", script="echo x")
    service.remove_vertex(db, "g", names[20])
    service.add_vertex(db, "g", "added", "true")
    service.check_graph(db, "g")
    service.seal_graph(db, "g")
    service.new_version(db, "g")
    service.check_graph(db, "g")
    service.seal_graph(db, "g")
    declared = [v.name for v in service.show_graph(db, "g").spec.vertices]
    run = service.start_run(db, "g", detach=True).id
    shown = [t.vertex for t in service.show_run(db, run).tracks]
    assert shown == declared and declared[10] == "renamed" and declared[-1] == "added"
    page = [t.vertex for t in service.show_run(db, run, limit=10, offset=100).tracks]
    assert page == declared[100:110]


def test_a_run_with_secrets_is_not_retried_detached_and_the_refusal_names_them(db):
    service.import_graph(db, {"name": "s", "vertices": [{"name": "a", "script": "test {pw} = no",
                                                          "inputs": {"pw": "secret", "n": "int"}}]}, seal=True)
    run = service.start_run(db, "s", {"pw": "yes", "n": 1}, owner="gone").id
    service.cancel_run(db, run)
    before = snapshot(db)
    with pytest.raises(SecretsNeedOwnerError) as exc:
        service.retry_run(db, run, detach=True)
    assert exc.value.names == ["pw"] and "(pw)" in str(exc.value) and "without --detach" in str(exc.value)
    assert snapshot(db) == before
