"""The HTTP API against a real `pipeline-engine serve` process on loopback, on every backend:
tokens and roles, every endpoint, the error shape, the body limit.

One server (without a worker) per backend serves the whole module; each test uses names of
its own. Tests that need a worker start their own server."""
from __future__ import annotations

import json
import os

import httpx
import pytest
from conftest import ALL_BACKENDS, Server, served, snapshot, unique, wait_for

from pipeline_engine import service
from pipeline_engine.db import Database

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module", params=ALL_BACKENDS)
def api(request, tmp_path_factory, sqlite_template):
    tmp = tmp_path_factory.mktemp("api")
    limit = {"PIPELINE_ENGINE_BODY_LIMIT": str(BODY_LIMIT)}
    with served(request, tmp, sqlite_template, "--no-worker", prefix="the", env=limit) as (server, db, tokens):
        yield API(server, db, tokens)


class API:
    def __init__(self, server: Server, db: Database, tokens: dict[str, str]):
        self.server, self.db, self.tokens = server, db, tokens
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def call(self, method: str, path: str, role: str | None = "admin", **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def graph(self, name: str, *, seal: bool = True, vertices=None, edges=()) -> dict:
        body = {"name": name, "vertices": vertices or [{"name": "a", "script": "echo {rows}",
                                                         "inputs": {"rows": "int"}}], "edges": list(edges)}
        r = self.call("POST", "/graphs" + ("?seal=true" if seal else ""), json=body)
        assert r.status_code == 201, r.text
        return r.json()


def state(db) -> dict:
    """The database's rows but the tokens' last use, which a call with a valid token may note
    (at most once a minute) even when the call itself is refused."""
    rows = snapshot(db)
    rows["token"] = [row[:5] for row in rows["token"]]
    return rows


def error(r: httpx.Response, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["type"] == kind and body["message"] and body["problems"], body
    return body


# --- the contract: which role each call needs ------------------------------------------------------

#: (method, path) -> the least role that may call it; None: no token needed
ROLES = {
    ("GET", "/api/v1/health"): None,
    ("GET", "/api/v1/workers"): "viewer",
    ("GET", "/api/v1/pools"): "viewer",
    ("PUT", "/api/v1/pools/{name}"): "editor",
    ("DELETE", "/api/v1/pools/{name}"): "editor",
    ("GET", "/api/v1/graphs"): "viewer",
    ("POST", "/api/v1/graphs"): "editor",
    ("GET", "/api/v1/graphs/{name}"): "viewer",
    ("DELETE", "/api/v1/graphs/{name}"): "editor",
    ("GET", "/api/v1/graphs/{name}/export"): "viewer",
    ("POST", "/api/v1/graphs/{name}/check"): "editor",
    ("POST", "/api/v1/graphs/{name}/seal"): "editor",
    ("POST", "/api/v1/graphs/{name}/copy"): "editor",
    ("POST", "/api/v1/graphs/{name}/runs"): "operator",
    ("GET", "/api/v1/runs"): "viewer",
    ("GET", "/api/v1/runs/{run_id}"): "viewer",
    ("GET", "/api/v1/runs/{run_id}/attempts"): "viewer",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "operator",
    ("POST", "/api/v1/runs/{run_id}/retry"): "operator",
    ("GET", "/api/v1/runs/{run_id}/tracks/{vertex}/log"): "viewer",
    ("GET", "/api/v1/events"): "viewer",
    ("GET", "/api/v1/schedules"): "viewer",
    ("GET", "/api/v1/schedules/{name}"): "viewer",
    ("GET", "/api/v1/schedules/{name}/history"): "viewer",
    ("PUT", "/api/v1/schedules/{name}"): "editor",
    ("POST", "/api/v1/schedules/{name}/pause"): "operator",
    ("POST", "/api/v1/schedules/{name}/resume"): "operator",
    ("DELETE", "/api/v1/schedules/{name}"): "editor",
    ("POST", "/api/v1/graphs/{name}/backfill"): "operator",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/tokens"): "admin",
    ("POST", "/api/v1/tokens"): "admin",
    ("DELETE", "/api/v1/tokens/{name}"): "admin",
    ("POST", "/api/v1/recover"): "admin",
    ("POST", "/api/v1/prune"): "admin",
}
RANKS = ["viewer", "operator", "editor", "admin"]


def _concrete(path: str, graph: str, run_id: int) -> str:
    return path.replace("{name}", graph).replace("{run_id}", str(run_id)).replace("{vertex}", "a")


def test_the_openapi_document_lists_exactly_the_calls_whose_roles_are_known(api):
    r = api.call("GET", "/openapi.json", role=None)
    assert r.status_code == 200
    document = r.json()
    found = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert found == set(ROLES)
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_health_needs_no_token_and_says_the_database_answers(api):
    r = api.call("GET", "/health", role=None)
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "version": r.json()["version"]}
    assert r.json()["version"]


@pytest.mark.parametrize("route", sorted(k for k, v in ROLES.items() if v is not None))
def test_every_call_without_a_valid_token_is_refused_and_changes_nothing(api, route):
    method, path = route
    graph = unique("g")
    api.graph(graph)
    before = snapshot(api.db)
    for headers in ({}, {"Authorization": "Bearer pe_not-a-token"}, {"Authorization": "Basic YWRtaW46YWRtaW4="},
                    {"Authorization": f"Bearer {api.tokens['admin']}x"}):
        r = api.call(method, _concrete(path, graph, 1)[len("/api/v1"):], role=None, headers=dict(headers),
                     json={"name": "x", "size": 1, "role": "admin", "older_than_days": 0})
        error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert snapshot(api.db) == before


@pytest.mark.parametrize("route", sorted(k for k, v in ROLES.items() if v not in (None, "viewer")))
def test_every_call_is_refused_to_a_role_below_the_one_it_needs_and_changes_nothing(api, route):
    method, path = route
    graph = unique("g")
    api.graph(graph)
    run = api.call("POST", f"/graphs/{graph}/runs", json={"parameters": {"rows": 1}}).json()["id"]
    before = state(api.db)
    for role in RANKS[:RANKS.index(ROLES[route])]:
        r = api.call(method, _concrete(path, graph, run)[len("/api/v1"):], role=role, json={
            "name": "x", "size": 1, "parameters": {}, "role": "admin", "older_than_days": 0})
        body = error(r, 403, "forbidden")
        assert f"the-{role}" in body["message"] and ROLES[route] in body["message"]
    assert state(api.db) == before


# --- graphs ---------------------------------------------------------------------------------------

def test_a_graph_imported_as_json_or_yaml_reads_back_as_the_cli_shows_it(api, cli_json):
    name = unique("g")
    yaml_file = f"name: {name}\nvertices:\n  - name: a\n    script: echo {{rows}}\n    inputs: {{rows: int}}\n" \
                f"  - name: b\n    script: echo b\nedges: [[a, b]]\n"
    r = api.call("POST", "/graphs?check=true", content=yaml_file, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/api/v1/graphs/{name}"
    assert r.json()["status"] == "checked" and r.json()["vertices"] == 2
    shown = api.call("GET", f"/graphs/{name}", role="viewer")
    assert shown.status_code == 200
    assert shown.json() == cli_json(api.server, "graph", "show", name, "--json")
    listed = api.call("GET", "/graphs", role="viewer").json()
    assert [g for g in listed if g["name"] == name] == [g for g in cli_json(api.server, "graph", "list", "--json")
                                                         if g["name"] == name]
    exported = api.call("GET", f"/graphs/{name}/export?format=json", role="viewer")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    again = api.call("POST", "/graphs", content=exported.content, headers={"Content-Type": "application/json"})
    assert again.status_code == 201 and again.json()["vertices"] == 2
    assert api.call("GET", f"/graphs/{name}/export", role="viewer").text.startswith("name: ")


@pytest.fixture
def cli_json():
    """The CLI's --json output on the module's database, for comparison with the API's."""
    import subprocess
    import sys

    from conftest import ROOT

    def run(server, *args):
        url = server.proc.args[server.proc.args.index("--db") + 1]
        done = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", url, *args], cwd=ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    return run


@pytest.mark.parametrize("body, content_type, problem", [
    ("{", "application/json", "not valid JSON"),
    ("name: [", "application/yaml", "not valid YAML"),
    ('{"name": "x"}', "application/json", "vertices"),
    ('{"name": "bad name", "vertices": []}', "application/json", "bad name"),
    ('{"name": "x", "vertices": [{"name": "a", "script": "echo {n}", "inputs": {"n": "nonsense"}}]}',
     "application/json", "nonsense"),
    ("name: x\nvertices: []\n", "text/plain", "application/json"),
    (b"\xff\xfe", "application/json", "UTF-8"),
])
def test_a_bad_graph_file_is_a_422_naming_the_problem_and_changes_nothing(api, body, content_type, problem):
    before = state(api.db)
    r = api.call("POST", "/graphs", content=body, headers={"Content-Type": content_type})
    found = error(r, 422, "validation")
    assert any(problem in p for p in found["problems"]), found
    assert state(api.db) == before


def test_check_seal_copy_and_delete(api):
    name = unique("g")
    api.graph(name, seal=False, vertices=[{"name": "a", "script": "true"}, {"name": "b", "script": "true"}],
              edges=[["a", "b"], ["b", "a"]])
    before = state(api.db)
    cycle = error(api.call("POST", f"/graphs/{name}/check", role="editor"), 422, "validation")
    assert cycle["problems"] == [f"graph '{name}': cycle: a -> b -> a"]
    error(api.call("POST", f"/graphs/{name}/seal", role="editor"), 409, "conflict")  # not checked
    assert state(api.db) == before

    good = unique("g")
    api.graph(good, seal=False)
    checked = api.call("POST", f"/graphs/{good}/check", role="editor")
    assert checked.status_code == 200 and checked.json()["status"] == "checked" and checked.json()["order"] == ["a"]
    sealed = api.call("POST", f"/graphs/{good}/seal", role="editor")
    assert sealed.status_code == 200 and sealed.json()["status"] == "sealed"
    error(api.call("POST", f"/graphs/{good}/seal", role="editor"), 409, "conflict")

    copy = unique("g")
    copied = api.call("POST", f"/graphs/{good}/copy", role="editor", json={"name": copy})
    assert copied.status_code == 201 and copied.json()["name"] == copy and copied.json()["status"] == "draft"
    error(api.call("POST", f"/graphs/{good}/copy", role="editor", json={"name": copy}), 409, "conflict")
    error(api.call("POST", f"/graphs/{good}/copy", role="editor", json={"name": copy, "extra": 1}), 422, "validation")

    run = api.call("POST", f"/graphs/{good}/runs", role="operator", json={"parameters": {"rows": 1}}).json()["id"]
    error(api.call("DELETE", f"/graphs/{good}", role="editor"), 409, "conflict")  # a running run
    api.call("POST", f"/runs/{run}/cancel", role="operator")
    error(api.call("DELETE", f"/graphs/{good}", role="editor"), 409, "conflict")  # a run, without with_runs
    deleted = api.call("DELETE", f"/graphs/{good}?with_runs=true", role="editor")
    assert deleted.status_code == 204 and deleted.content == b""
    error(api.call("GET", f"/graphs/{good}", role="viewer"), 404, "not_found")
    error(api.call("GET", f"/runs/{run}", role="viewer"), 404, "not_found")


# --- runs ----------------------------------------------------------------------------------------

def test_an_operator_starts_a_run_with_typed_values_and_reads_it_as_the_cli_shows_it(api, cli_json):
    name = unique("g")
    api.graph(name, vertices=[{"name": "a", "script": "echo {rows} {flag} {rate}",
                               "inputs": {"rows": "int", "flag": "bool", "rate": "float"}},
                              {"name": "b", "script": "echo {currency}", "inputs": {"currency": "str"}}],
              edges=[["a", "b"]])
    r = api.call("POST", f"/graphs/{name}/runs", role="operator",
                 json={"parameters": {"rows": 200, "flag": True, "rate": "0.5", "b.currency": "USD"}, "name": "nightly"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert r.headers["Location"] == f"/api/v1/runs/{run['id']}"
    assert run["graph"] == name and run["name"] == "nightly" and run["state"] == "running"
    assert run["counts"] == {"pending": 1, "waiting": 1}
    assert (run["trigger"], run["schedule"], run["fire_at"]) == ("api", None, None)
    shown = api.call("GET", f"/runs/{run['id']}", role="viewer").json()
    assert shown == cli_json(api.server, "runs", "show", str(run["id"]), "--json")
    # the answer is the run as created, with the keys and values a read of it gives
    assert {k: shown[k] for k in ("id", "graph", "version", "name", "started_at", "finished_at", "started_by")} == \
        {k: run[k] for k in ("id", "graph", "version", "name", "started_at", "finished_at", "started_by")}
    assert shown["parameters"] == {"rows": 200, "flag": True, "rate": "0.5", "b.currency": "USD"}
    page = api.call("GET", f"/runs/{run['id']}?limit=1&offset=1", role="viewer").json()
    assert [t["vertex"] for t in page["tracks"]] == ["b"] and page["total"] == 2
    waiting = api.call("GET", f"/runs/{run['id']}?state=waiting", role="viewer").json()
    assert [t["vertex"] for t in waiting["tracks"]] == ["b"]
    listed = api.call("GET", f"/runs?graph={name}&state=running", role="viewer").json()
    assert [x["id"] for x in listed] == [run["id"]]
    assert listed == cli_json(api.server, "runs", "list", "--graph", name, "--state", "running", "--json")
    assert listed[0].keys() == run.keys()


@pytest.mark.parametrize("parameters, problem", [
    ({"rows": "many"}, "vertex 'a': input 'rows'"),
    ({"rows": 1.5}, "vertex 'a': input 'rows'"),
    ({}, "rows"),
    ({"rows": 1, "nope": 1}, "parameter 'nope'"),
    ({"rows": [1]}, "parameters.rows"),
    ({"rows": None}, "parameters.rows"),
])
def test_a_bad_value_is_a_422_naming_the_input_and_starts_nothing(api, parameters, problem):
    name = unique("g")
    api.graph(name)
    before = state(api.db)
    found = error(api.call("POST", f"/graphs/{name}/runs", role="operator", json={"parameters": parameters}),
                  422, "validation")
    assert any(problem in p for p in found["problems"]), found
    assert state(api.db) == before


def test_runs_of_what_cannot_run_are_refused(api):
    draft = unique("g")
    api.graph(draft, seal=False)
    before = state(api.db)
    error(api.call("POST", f"/graphs/{draft}/runs", role="operator", json={"parameters": {"rows": 1}}), 409, "conflict")
    error(api.call("POST", "/graphs/nothing-here/runs", role="operator", json={}), 404, "not_found")
    error(api.call("POST", f"/graphs/{draft}/runs", role="operator", json={"parameters": {"rows": 1}, "x": 1}),
          422, "validation")
    error(api.call("POST", f"/graphs/{draft}/runs", role="operator", content="[", headers={
        "Content-Type": "application/json"}), 422, "validation")
    secret = unique("g")
    api.graph(secret, vertices=[{"name": "a", "script": "curl -u {token} x", "inputs": {"token": "secret"}}])
    before = state(api.db)
    refused = error(api.call("POST", f"/graphs/{secret}/runs", role="operator", json={"parameters": {
        "token": "hunter2"}}), 409, "conflict")
    assert "token" in refused["message"] and "hunter2" not in json.dumps(refused)
    assert state(api.db) == before
    error(api.call("GET", "/runs/999999", role="viewer"), 404, "not_found")
    error(api.call("GET", "/runs/0", role="viewer"), 422, "validation")
    error(api.call("GET", "/runs/x", role="viewer"), 422, "validation")
    error(api.call("GET", "/runs?state=bogus", role="viewer"), 422, "validation")
    error(api.call("GET", "/runs?limit=0", role="viewer"), 422, "validation")


def test_cancel_and_retry(api):
    name = unique("g")
    api.graph(name)
    run = api.call("POST", f"/graphs/{name}/runs", role="operator", json={"parameters": {"rows": 1}}).json()["id"]
    error(api.call("POST", f"/runs/{run}/retry", role="operator"), 409, "conflict")  # still running
    cancelled = api.call("POST", f"/runs/{run}/cancel", role="operator")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["counts"] == {"cancelled": 1}
    error(api.call("POST", f"/runs/{run}/cancel", role="operator"), 409, "conflict")
    retried = api.call("POST", f"/runs/{run}/retry", role="operator")
    assert retried.status_code == 202, retried.text
    assert retried.json()["state"] == "running" and retried.json()["retried"] == ["a"]
    error(api.call("POST", "/runs/999999/cancel", role="operator"), 404, "not_found")


# --- pools, workers -------------------------------------------------------------------------------

def test_pools_are_set_listed_and_deleted_by_editors(api):
    name = unique("p")
    r = api.call("PUT", f"/pools/{name}", role="editor", json={"size": 3, "description": "the warehouse"})
    assert r.status_code == 200 and r.json()["size"] == 3 and r.json()["description"] == "the warehouse"
    assert api.call("PUT", f"/pools/{name}", role="editor", json={"size": 1}).json()["size"] == 1
    assert [p for p in api.call("GET", "/pools", role="viewer").json() if p["name"] == name][0]["size"] == 1
    before = state(api.db)
    for body in ({"size": -1}, {"size": "x"}, {}, {"size": 1, "other": 2}, {"size": True}):
        error(api.call("PUT", f"/pools/{name}", role="editor", json=body), 422, "validation")
    error(api.call("PUT", "/pools/bad%20name", role="editor", json={"size": 1}), 422, "validation")
    assert state(api.db) == before
    graph = unique("g")
    api.graph(graph, vertices=[{"name": "a", "script": "true", "pool": name}])
    error(api.call("DELETE", f"/pools/{name}", role="editor"), 409, "conflict")
    other = unique("p")
    api.call("PUT", f"/pools/{other}", role="editor", json={"size": 2})
    assert api.call("DELETE", f"/pools/{other}", role="editor").status_code == 204
    error(api.call("DELETE", f"/pools/{other}", role="editor"), 404, "not_found")


def test_schedules_are_set_read_paused_and_deleted_as_the_cli_shows_them(api, cli_json):
    graph, name = unique("g"), unique("s")
    api.graph(graph)
    body = {"graph": graph, "cron": "30 2 * * *", "timezone": "Europe/Berlin", "parameters": {"rows": 7}}
    r = api.call("PUT", f"/schedules/{name}", role="editor", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["cron"], created["timezone"], created["parameters"], created["overlap"]) == \
        ("30 2 * * *", "Europe/Berlin", {"rows": 7}, "skip")
    assert api.call("PUT", f"/schedules/{name}", role="editor", json=body).status_code == 200  # the same again
    listed = [x for x in api.call("GET", "/schedules", role="viewer").json() if x["name"] == name]
    assert listed == [created] == [x for x in cli_json(api.server, "schedule", "list", "--json") if x["name"] == name]
    shown = api.call("GET", f"/schedules/{name}", role="viewer").json()
    assert shown == cli_json(api.server, "schedule", "show", name, "--json")
    assert len(shown["next"]) == 5 and set(shown["next"][0]) == {"local", "utc"} and shown["history"] == []
    assert api.call("GET", f"/schedules/{name}/history", role="viewer").json() == []
    assert api.call("POST", f"/schedules/{name}/pause", role="operator").json()["paused"] is True
    assert api.call("POST", f"/schedules/{name}/resume", role="operator").json()["paused"] is False
    before = state(api.db)
    for bad, kind in (({**body, "cron": "61 * * * *"}, "validation"), ({**body, "every": "1h"}, "validation"),
                      ({**body, "timezone": "Mars/Olympus"}, "validation"),
                      ({**body, "parameters": {"rows": "x"}}, "validation"), ({**body, "parameters": {}}, "validation"),
                      ({**body, "graph": "ghost"}, "not_found"), ({**body, "colour": "red"}, "validation"),
                      ({**body, "max_catchup": 0}, "validation")):
        error(api.call("PUT", f"/schedules/{name}", role="editor", json=bad), 404 if kind == "not_found" else 422,
              kind)
    error(api.call("GET", "/schedules/nope", role="viewer"), 404, "not_found")
    assert state(api.db) == before
    assert api.call("DELETE", f"/schedules/{name}", role="editor").status_code == 204
    error(api.call("DELETE", f"/schedules/{name}", role="editor"), 404, "not_found")


def test_workers_lists_the_live_workers(api):
    assert api.call("GET", "/workers", role="viewer").json() == []


# --- what the framework answers -----------------------------------------------------------------

def test_unknown_paths_and_methods_answer_in_the_error_shape(api):
    error(api.call("GET", "/nothing", role="viewer"), 404, "not_found")
    error(api.call("PATCH", "/graphs", role="viewer"), 405, "method_not_allowed")
    error(api.call("GET", "/nothing", role=None), 401, "unauthorized")  # nothing is told without a token
    # the Allow header names every method of the path, not only the first route's (schemathesis)
    wrong = api.call("OPTIONS", "/graphs/x", role="viewer")
    error(wrong, 405, "method_not_allowed")
    assert wrong.headers["Allow"] == "DELETE, GET"
    # a body that is not even text is a 422 like any bad body (it was a 400 of another shape)
    error(api.call("PUT", "/pools/p", role="editor", content=b"\xff\xfe{", headers={
        "Content-Type": "application/json"}), 422, "validation")


def test_a_body_over_the_limit_is_a_413_before_it_is_read(api):
    before = state(api.db)
    big = json.dumps({"name": "big", "vertices": [{"name": "a", "script": "x" * BODY_LIMIT}]})
    error(api.call("POST", "/graphs", content=big, headers={"Content-Type": "application/json"}), 413, "too_large")

    def chunks():  # no Content-Length: the limit is enforced as the bytes arrive
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096].encode()
    error(api.call("POST", "/graphs", content=chunks(), headers={"Content-Type": "application/json"}),
          413, "too_large")
    assert state(api.db) == before


def test_tokens_are_never_stored_nor_logged(api):
    for role in ("viewer", "operator", "editor"):
        api.call("GET", "/graphs", role=role)
    dump = json.dumps(state(api.db), default=str)
    log = api.server.text()
    for role in ("viewer", "operator", "editor", "admin"):
        assert api.tokens[role] not in dump
    for role in ("viewer", "operator", "editor"):
        assert api.tokens[role] not in log
    # the first admin token is said once, at the start, and never in the access log after it
    assert log.count(api.tokens["admin"]) == 1
    access = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert access and {"the-viewer", "the-operator", "the-editor", "admin"} <= {a["token"] for a in access}
    assert all(set(a) == {"time", "method", "path", "status", "ms", "token", "client"} for a in access)


# --- the server process ----------------------------------------------------------------------------

def test_serve_makes_an_admin_token_only_when_there_is_none(db_url, tmp_path):
    server = Server(db_url, tmp_path / "a.log", "--no-worker")
    try:
        assert server.first_token and server.first_token.startswith("pe_")
        r = httpx.get(server.url + "/api/v1/graphs", headers={"Authorization": f"Bearer {server.first_token}"})
        assert r.status_code == 200
    finally:
        assert server.stop() == 0
    again = Server(db_url, tmp_path / "b.log", "--no-worker")
    try:
        assert again.first_token is None and "created token" not in again.text()
    finally:
        again.stop()
    db = Database(db_url, auto_migrate=False)
    assert [(t.name, t.role) for t in service.list_tokens(db)] == [("admin", "admin")]
    db.dispose()


def test_serve_runs_a_worker_and_a_sigterm_lets_its_running_track_finish(db_url, tmp_path):
    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "slow", "vertices": [{"name": "v", "script": "sleep 1.5; echo done"}]},
                         seal=True)
    token = service.create_token(db, "ops", "operator")[1]
    server = Server(db_url, tmp_path / "s.log", "--concurrency", "2", "--grace", "20")
    try:
        assert "worker" in server.text() and "concurrency 2" in server.text()
        run = httpx.post(server.url + "/api/v1/graphs/slow/runs", json={},
                         headers={"Authorization": f"Bearer {token}"}).json()["id"]
        wait_for(lambda: service.show_run(db, run).tracks[0].state == "running", 15, "the track to start")
    finally:
        status = server.stop()
    assert status == 0, server.text()
    info = service.show_run(db, run)
    assert info.state == "succeeded" and info.tracks[0].stdout.strip() == "done"
    db.dispose()


def test_serve_refuses_a_port_in_use_with_a_clear_message(db_url, tmp_path):
    import socket
    import subprocess
    import sys

    from conftest import ROOT

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        done = subprocess.run([sys.executable, "-m", "pipeline_engine", "--db", db_url, "serve", "--no-worker",
                               "--port", str(taken.getsockname()[1])], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
    finally:
        taken.close()
    assert done.returncode == 2
    assert "cannot listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr
    db = Database(db_url, auto_migrate=False)
    assert service.list_tokens(db) == []  # nothing was made before the refusal
    db.dispose()


def test_the_cli_records_what_it_changes_as_cli_user_at_host(cli, db):
    import getpass
    import socket

    assert cli("pool", "set", "p", "2")[0] == 0
    code, out, _ = cli("audit", "--json")
    assert code == 0
    entry = json.loads(out)[0]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        f"cli:{getpass.getuser()}@{socket.gethostname()}", "pool.set", "p")
    code, out, _ = cli("audit")
    assert code == 0 and "pool.set" in out.splitlines()[1]


def test_the_cli_token_commands(cli, db):
    code, out, err = cli("token", "create", "ci-bot", "--role", "operator")
    assert code == 0 and out.startswith("pe_") and len(out.split()) == 1 and "operator" in err
    token = out.strip()
    code, out, _ = cli("token", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [set(t) for t in listed] == [{"name", "role", "created_at", "last_used_at"}]
    assert listed[0]["name"] == "ci-bot" and listed[0]["role"] == "operator" and listed[0]["last_used_at"] is None
    assert service.authenticate(db, token).name == "ci-bot"
    assert json.loads(cli("token", "list", "--json")[1])[0]["last_used_at"] is not None
    assert token not in json.dumps(snapshot(db), default=str)
    before = snapshot(db)
    assert cli("token", "create", "ci-bot", "--role", "viewer")[0] == 2
    assert cli("token", "create", "x", "--role", "root")[0] == 2
    assert cli("token", "create", "bad name", "--role", "viewer")[0] == 2
    assert cli("token", "revoke", "nobody")[0] == 2
    assert snapshot(db) == before
    assert cli("token", "revoke", "ci-bot")[:2] == (0, "token 'ci-bot' revoked\n")
    assert service.authenticate(db, token) is None
    assert cli("token", "list")[1].splitlines() == ["NAME  ROLE  CREATED  LAST USED"]


def test_settings_of_the_server_come_from_the_environment():
    from pipeline_engine.errors import SettingError
    from pipeline_engine.settings import Settings

    found = Settings.from_env({"PIPELINE_ENGINE_BIND": "0.0.0.0", "PIPELINE_ENGINE_PORT": "9000",
                               "PIPELINE_ENGINE_BODY_LIMIT": "1024", "PIPELINE_ENGINE_PUBLIC_METRICS": "yes"})
    assert (found.bind, found.port, found.body_limit, found.public_metrics) == ("0.0.0.0", 9000, 1024, True)
    for var, value in (("PORT", "65536"), ("PORT", "x"), ("BODY_LIMIT", "0"), ("PUBLIC_METRICS", "maybe")):
        with pytest.raises(SettingError, match=f"PIPELINE_ENGINE_{var}"):
            Settings.from_env({f"PIPELINE_ENGINE_{var}": value})


def test_the_interactive_docs_need_no_other_site(api):
    page = api.http.get("/api/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    sources = [part.split('"')[1] for part in page.text.split("src=")[1:]] + \
              [part.split('"')[1] for part in page.text.split("href=")[1:]]
    assert sources and all(s.startswith("/api/docs/assets/") for s in sources), sources
    assert "/api/v1/openapi.json" in page.text
    for source in sources:
        asset = api.http.get(source)
        assert asset.status_code == 200 and len(asset.content) > 100, source



# --- who did what -----------------------------------------------------------------------------------

def test_every_change_is_in_the_audit_log_with_the_tokens_name_and_runs_say_who_started_them(api):
    name = unique("g")
    newest = api.call("GET", "/audit?limit=1", role="admin").json()
    last = newest[0]["id"] if newest else 0
    api.graph(name, seal=False)
    api.call("POST", f"/graphs/{name}/check", role="editor")
    api.call("POST", f"/graphs/{name}/seal", role="editor")
    run = api.call("POST", f"/graphs/{name}/runs", role="operator", json={"parameters": {"rows": 3}}).json()
    assert run["started_by"] == "the-operator"
    assert api.call("GET", f"/runs/{run['id']}", role="viewer").json()["started_by"] == "the-operator"
    api.call("POST", f"/runs/{run['id']}/cancel", role="operator")
    api.call("POST", f"/runs/{run['id']}/retry", role="operator")
    api.call("PUT", f"/pools/{name}", role="editor", json={"size": 2})
    error(api.call("POST", f"/graphs/{name}/seal", role="editor"), 409, "conflict")  # refused: not recorded
    entries = [e for e in api.call("GET", "/audit?limit=1000", role="admin").json() if e["id"] > last]
    assert [(e["actor"], e["action"], e["target"]) for e in reversed(entries)] == [
        ("admin", "graph.import", name), ("the-editor", "graph.check", name), ("the-editor", "graph.seal", name),
        ("the-operator", "run.start", str(run["id"])), ("the-operator", "run.cancel", str(run["id"])),
        ("the-operator", "run.retry", str(run["id"])), ("the-editor", "pool.set", name)]
    assert all(set(e) == {"id", "at", "actor", "action", "target", "detail"} for e in entries)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)  # newest first


def test_an_idempotency_key_starts_one_run_for_the_same_request_and_refuses_another(api):
    import threading

    name = unique("g")
    api.graph(name)
    key = {"Idempotency-Key": unique("deploy-")}
    first = api.call("POST", f"/graphs/{name}/runs", role="operator", headers=dict(key), json={"parameters": {"rows": 1}})
    assert first.status_code == 201
    again = api.call("POST", f"/graphs/{name}/runs", role="operator", headers=dict(key), json={"parameters": {"rows": 1}})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"/api/v1/runs/{first.json()['id']}"
    before = state(api.db)
    other = api.call("POST", f"/graphs/{name}/runs", role="operator", headers=dict(key), json={"parameters": {"rows": 2}})
    assert "another request" in error(other, 409, "conflict")["message"]
    assert state(api.db) == before
    # another caller's same key is its own
    mine = api.call("POST", f"/graphs/{name}/runs", role="editor", headers=dict(key), json={"parameters": {"rows": 1}})
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]
    for bad in ("", "x" * 256, "a b"):
        error(api.call("POST", f"/graphs/{name}/runs", role="operator", headers={"Idempotency-Key": bad},
                       json={"parameters": {"rows": 1}}), 422, "validation")

    # eight requests racing with one new key start one run between them
    racing = {"Idempotency-Key": unique("race-")}
    answers = []

    def post():
        with httpx.Client(base_url=api.server.url, timeout=30) as client:
            answers.append(client.post(f"/api/v1/graphs/{name}/runs", json={"parameters": {"rows": 5}},
                                       headers={**racing, "Authorization": f"Bearer {api.tokens['operator']}"}))
    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1


def test_admins_manage_tokens_recover_and_prune_over_the_api(api):
    name = unique("bot-")
    made = api.call("POST", "/tokens", role="admin", json={"name": name, "role": "viewer"})
    assert made.status_code == 201 and made.json()["token"].startswith("pe_") and made.json()["role"] == "viewer"
    token = made.json()["token"]
    assert api.http.get("/api/v1/graphs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listed = api.call("GET", "/tokens", role="admin").json()
    assert name in [t["name"] for t in listed] and all("token" not in t for t in listed)
    error(api.call("POST", "/tokens", role="admin", json={"name": name, "role": "viewer"}), 409, "conflict")
    error(api.call("POST", "/tokens", role="admin", json={"name": unique("x"), "role": "root"}), 422, "validation")
    assert api.call("DELETE", f"/tokens/{name}", role="admin").status_code == 204
    error(api.http.get("/api/v1/graphs", headers={"Authorization": f"Bearer {token}"}), 401, "unauthorized")
    error(api.call("DELETE", f"/tokens/{name}", role="admin"), 404, "not_found")
    assert api.call("POST", "/recover", role="admin").json() == {"taken_back": 0}
    assert api.call("POST", "/prune", role="admin", json={"older_than_days": 365, "dry_run": True}).json() == {
        "runs": 0, "tracks": 0, "dry_run": True}
    error(api.call("POST", "/prune", role="admin", json={"older_than_days": -1}), 422, "validation")
    actions = [(e["actor"], e["action"], e["target"]) for e in api.call("GET", "/audit?limit=20", role="admin").json()]
    assert ("admin", "token.create", name) in actions and ("admin", "token.revoke", name) in actions
    assert ("admin", "recover", "workers") in actions


@pytest.mark.serial  # it stops the server every other test's database is on
@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_health_says_unavailable_while_the_database_is_stopped_and_ok_once_it_is_back(backend, db_url, tmp_path):
    from conftest import database_server_stopped

    server = Server(db_url, tmp_path / "s.log", "--no-worker")
    try:
        token = server.first_token
        assert httpx.get(server.url + "/api/v1/health").json()["status"] == "ok"
        with database_server_stopped(backend):
            down = httpx.get(server.url + "/api/v1/health", timeout=30)
            assert down.status_code == 503
            assert down.json()["status"] == "unavailable" and down.json()["database"] != "ok"
            refused = httpx.get(server.url + "/api/v1/graphs", headers={"Authorization": f"Bearer {token}"},
                                timeout=30)
            error(refused, 503, "unavailable")
            assert "Traceback" not in refused.text
        wait_for(lambda: httpx.get(server.url + "/api/v1/health", timeout=30).status_code == 200, 30,
                 "the health check to answer ok again")
        assert httpx.get(server.url + "/api/v1/graphs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        assert server.stop() == 0


def test_a_run_with_secrets_started_through_a_server_with_a_worker_runs_and_its_secret_is_nowhere(db_url, tmp_path):
    secret = "hunter2-" + os.urandom(8).hex()
    out = tmp_path / "used"
    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "deploy", "vertices": [
        {"name": "push", "script": f"printf '%s' {{token}} > {out}; echo using {{token}}",
         "inputs": {"token": "secret", "target": "str"}}]}, seal=True)
    token = service.create_token(db, "ops", "operator")[1]
    server = Server(db_url, tmp_path / "s.log")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(server.url + "/api/v1/graphs/deploy/runs", headers=auth,
                       json={"parameters": {"token": secret, "target": "prod"}})
        assert r.status_code == 201, r.text
        run = r.json()["id"]
        assert r.json()["started_by"] == "ops"
        wait_for(lambda: service.show_run(db, run).state != "running", 30, "the run to finish")
        shown = httpx.get(server.url + f"/api/v1/runs/{run}", headers=auth).json()
        assert shown["state"] == "succeeded" and shown["parameters"] == {"token": "********", "target": "prod"}
        keyed = httpx.post(server.url + "/api/v1/graphs/deploy/runs", headers={**auth, "Idempotency-Key": "k1"},
                           json={"parameters": {"token": secret, "target": "prod"}})
        error(keyed, 409, "conflict")
        everything = [r.text, shown, keyed.text, httpx.get(server.url + "/api/v1/runs", headers=auth).text]
    finally:
        assert server.stop() == 0
    assert out.read_text() == secret  # the script had it
    assert service.track_output(db, run, "push").stdout.strip() == "using ********"
    assert secret not in json.dumps(everything)
    assert secret not in json.dumps(snapshot(db), default=str)
    assert secret not in server.text()
    logs = [p.read_text() for p in (tmp_path / "logs").rglob("*.log")] if (tmp_path / "logs").exists() else []
    assert all(secret not in text for text in logs)
    db.dispose()


def test_a_run_with_secrets_is_retried_through_a_server_given_its_secrets_again(db_url, tmp_path):
    secret = "hunter2-" + os.urandom(8).hex()
    out, flag = tmp_path / "used", tmp_path / "tried"
    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "deploy", "vertices": [
        {"name": "push", "script": f"test -f {flag} || {{ touch {flag}; exit 1; }}; printf '%s' {{token}} > {out}",
         "inputs": {"token": "secret"}}]}, seal=True)
    token = service.create_token(db, "ops", "operator")[1]
    auth = {"Authorization": f"Bearer {token}"}
    server = Server(db_url, tmp_path / "s.log")
    try:
        run = httpx.post(server.url + "/api/v1/graphs/deploy/runs", headers=auth,
                         json={"parameters": {"token": secret}}).json()["id"]
        wait_for(lambda: service.show_run(db, run).state == "failed", 30, "the first attempt to fail")
        before = snapshot(db)
        missing = error(httpx.post(server.url + f"/api/v1/runs/{run}/retry", headers=auth), 422, "validation")
        assert "token" in missing["message"]
        error(httpx.post(server.url + f"/api/v1/runs/{run}/retry", headers=auth,
                         json={"parameters": {"token": secret, "other": "x"}}), 422, "validation")
        assert snapshot(db) == before
        r = httpx.post(server.url + f"/api/v1/runs/{run}/retry", headers=auth, json={"parameters": {"token": secret}})
        assert r.status_code == 202, r.text
        assert r.json()["retried"] == ["push"] and r.json()["state"] == "running"
        wait_for(lambda: service.show_run(db, run).state != "running", 30, "the retry to finish")
        assert service.show_run(db, run).state == "succeeded"
        everything = [r.text, httpx.get(server.url + f"/api/v1/runs/{run}", headers=auth).text]
    finally:
        assert server.stop() == 0
    assert out.read_text() == secret  # the retried script had it
    assert secret not in json.dumps(everything)
    assert secret not in json.dumps(snapshot(db), default=str)
    assert secret not in server.text()
    # a server without a worker cannot hold them: refused, naming them, and nothing changes
    service.cancel_run(db, service.start_run(db, "deploy", {"token": secret}, owner="gone").id)
    refused_run = service.list_runs(db, graph="deploy", limit=1)[0].id
    bare = Server(db_url, tmp_path / "bare.log", "--no-worker")
    try:
        before = snapshot(db)
        refused = error(httpx.post(bare.url + f"/api/v1/runs/{refused_run}/retry", headers=auth,
                                   json={"parameters": {"token": secret}}), 409, "conflict")
        assert "(token)" in refused["message"] and "no worker" in refused["message"]
        assert snapshot(db) == before
    finally:
        bare.stop()
    db.dispose()


def test_a_server_without_a_worker_refuses_a_run_with_secrets_naming_them(api):
    name = unique("g")
    api.graph(name, vertices=[{"name": "a", "script": "echo {key} {pw}", "inputs": {"key": "secret", "pw": "secret"}}])
    before = state(api.db)
    refused = error(api.call("POST", f"/graphs/{name}/runs", role="operator", json={"parameters": {
        "key": "k", "pw": "p"}}), 409, "conflict")
    assert "(key, pw)" in refused["message"] and "no worker" in refused["message"]
    assert state(api.db) == before



def test_a_vertex_log_is_read_and_followed_from_the_file_with_secrets_masked(db_url, tmp_path):
    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "talk", "vertices": [
        {"name": "v", "script": "echo hello {pw}; sleep 1.5; echo world >&2", "inputs": {"pw": "secret"}}]}, seal=True)
    token = service.create_token(db, "reader", "operator")[1]
    auth = {"Authorization": f"Bearer {token}"}
    server = Server(db_url, tmp_path / "s.log")
    try:
        run = httpx.post(server.url + "/api/v1/graphs/talk/runs", headers=auth,
                         json={"parameters": {"pw": "s3cret-value"}}).json()["id"]
        wait_for(lambda: service.show_run(db, run).tracks[0].state == "running", 15, "the track to start")
        chunks = []
        with httpx.stream("GET", server.url + f"/api/v1/runs/{run}/tracks/v/log?follow=true", headers=auth,
                          timeout=30) as r:
            assert r.status_code == 200 and r.headers["X-Log-Source"] == "file"
            for chunk in r.iter_text():
                chunks.append(chunk)
        followed = "".join(chunks)
        assert "hello ********" in followed and followed.rstrip().endswith("world")
        assert "s3cret-value" not in followed
        assert service.show_run(db, run).state == "succeeded"  # the stream ended with the track
        whole = httpx.get(server.url + f"/api/v1/runs/{run}/tracks/v/log", headers=auth)
        assert whole.headers["X-Log-Source"] == "file" and whole.text == followed
        part = httpx.get(server.url + f"/api/v1/runs/{run}/tracks/v/log?offset=5", headers=auth)
        assert part.text == followed[5:]
        error(httpx.get(server.url + f"/api/v1/runs/{run}/tracks/nope/log", headers=auth), 404, "not_found")
    finally:
        assert server.stop() == 0
    db.dispose()


def test_a_log_not_on_the_servers_host_comes_from_the_database_tails(api):
    name = unique("g")
    api.graph(name)
    run = api.call("POST", f"/graphs/{name}/runs", role="operator", json={"parameters": {"rows": 1}}).json()["id"]
    r = api.call("GET", f"/runs/{run}/tracks/a/log", role="viewer")
    assert r.status_code == 200 and r.headers["X-Log-Source"] == "database" and r.text == ""
    assert r.headers["content-type"].startswith("text/plain")


# --- metrics --------------------------------------------------------------------------------------

def _figures(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_metrics_need_a_token_and_say_what_the_database_and_the_server_see(api):
    error(api.http.get("/metrics"), 401, "unauthorized")
    name = unique("g")
    api.graph(name)
    api.call("POST", f"/graphs/{name}/runs", role="operator", json={"parameters": {"rows": 1}})
    api.call("PUT", f"/pools/{unique('p')}", role="editor", json={"size": 4})
    api.call("GET", "/runs/999999", role="viewer")
    r = api.http.get("/metrics", headers={"Authorization": f"Bearer {api.tokens['viewer']}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = _figures(r.text)
    running = len(service.list_runs(api.db, state="running", limit=100_000))
    assert found['pipeline_engine_runs{state="running"}'] == running > 0
    assert found['pipeline_engine_tracks{state="pending"}'] >= 1
    assert any(k.startswith("pipeline_engine_pool_size{") and v == 4.0 for k, v in found.items())
    assert found['pipeline_engine_workers'] == 0
    assert found['pipeline_engine_http_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="404"}'] >= 1
    assert found['pipeline_engine_http_request_duration_seconds_count{method="POST",'
                 'route="/api/v1/graphs/{name}/runs"}'] >= 1


def test_public_metrics_and_a_workers_own_figures(db_url, tmp_path):
    import socket
    import subprocess
    import sys

    from conftest import ROOT, stop

    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "two", "vertices": [{"name": "a", "script": "true"},
                                                           {"name": "b", "script": "false"}]}, seal=True)
    server = Server(db_url, tmp_path / "s.log", "--no-worker", "--public-metrics")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "w.log", "w")
    w = subprocess.Popen([sys.executable, "-m", "pipeline_engine", "--db", db_url, "worker", "--poll", "0.05",
                          "--metrics-port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert httpx.get(server.url + "/metrics").status_code == 200  # no token needed
        run = service.start_run(db, "two", detach=True).id
        wait_for(lambda: service.show_run(db, run).state != "running", 30, "the run to finish")
        mine = wait_for(lambda: _try_get(f"http://127.0.0.1:{port}/metrics"), 15, "the worker's metrics")
        found = _figures(mine)
        assert found["pipeline_engine_attempts_started_total"] == 2
        assert found['pipeline_engine_attempts_ended_total{outcome="succeeded"}'] == 1
        assert found['pipeline_engine_attempts_ended_total{outcome="failed"}'] == 1
        assert found["pipeline_engine_claim_transaction_seconds_count"] >= 2
        assert found["pipeline_engine_worker_database_faults_total"] == 0
        workers = _figures(httpx.get(server.url + "/metrics").text)
        assert workers["pipeline_engine_workers"] == 1
    finally:
        stop(w)
        server.stop()
        db.dispose()


def _try_get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None



# --- events ---------------------------------------------------------------------------------------

def _read_events(response) -> list[tuple[float, str, dict]]:
    """(arrival time, kind, data) of each server-sent event, until the stream ends."""
    import time

    out, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((time.time(), kind, json.loads(line[len("data: "):])))
    return out


def test_events_tell_each_track_change_within_a_second_of_it_and_end_with_the_run(db_url, tmp_path):
    from datetime import datetime

    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "chain", "vertices": [
        {"name": "a", "script": "sleep 0.4"}, {"name": "b", "script": "sleep 0.4"},
        {"name": "c", "script": "sleep 0.3; exit 3"}], "edges": [["a", "b"], ["b", "c"]]}, seal=True)
    token = service.create_token(db, "watcher", "operator")[1]
    auth = {"Authorization": f"Bearer {token}"}
    server = Server(db_url, tmp_path / "s.log")
    try:
        run = httpx.post(server.url + "/api/v1/graphs/chain/runs", headers=auth, json={}).json()["id"]
        with httpx.stream("GET", server.url + f"/api/v1/events?run={run}", headers=auth, timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            got = _read_events(r)
        error(httpx.get(server.url + "/api/v1/events?run=999999", headers=auth), 404, "not_found")
        error(httpx.get(server.url + "/api/v1/events?run=0", headers=auth), 422, "validation")
    finally:
        server.stop()
    assert got[0][1] == "run" and got[0][2]["id"] == run
    assert got[-1][1] == "run" and got[-1][2]["state"] == "failed"
    assert got[-1][2]["counts"] == {"succeeded": 2, "failed": 1}
    # the last run event says when it ended, as `runs show` does
    shown = service.show_run(db, run, limit=0).to_dict()
    assert (got[-1][2]["started_at"], got[-1][2]["finished_at"]) == (shown["started_at"], shown["finished_at"])
    assert got[-1][2]["finished_at"] is not None and got[0][2]["finished_at"] is None
    tracks = [(when, data) for when, kind, data in got if kind == "track"]
    states = {v: [d["state"] for _, d in tracks if d["vertex"] == v] for v in "abc"}
    assert states["a"][-2:] == ["running", "succeeded"]
    # b is released and claimed in the worker's one transaction: it is seen waiting, then running
    assert states["b"][0] == "waiting" and states["b"][-2:] == ["running", "succeeded"]
    assert states["c"][-2:] == ["running", "failed"]
    for when, data in tracks:  # each change arrives within a second of the moment it happened
        moment = data["finished_at"] if data["state"] in ("succeeded", "failed") else data["started_at"] \
            if data["state"] == "running" else None
        if moment is not None:
            assert when - datetime.fromisoformat(moment).timestamp() < 1.0, (data, when)
    assert all(d["run"] == run and set(d) >= {"vertex", "state", "attempt", "exit_code"} for _, d in tracks)
    db.dispose()


def test_every_runs_events_tell_runs_running_starting_progressing_and_ending(db_url, tmp_path):
    import threading
    import time

    db = Database(db_url, auto_migrate=False)
    service.import_graph(db, {"name": "long", "vertices": [{"name": "wait", "script": "sleep 60"}]}, seal=True)
    service.import_graph(db, {"name": "chain", "vertices": [
        {"name": f"s{i}", "script": "sleep 0.4"} for i in range(4)] + [{"name": "last", "script": "exit 3"}],
        "edges": [["s0", "s1"], ["s1", "s2"], ["s2", "s3"], ["s3", "last"]]}, seal=True)
    ended = service.start_run(db, "chain", detach=True).id  # ended before the stream: never told
    service.cancel_run(db, ended)
    token = service.create_token(db, "dashboard", "operator")[1]
    auth = {"Authorization": f"Bearer {token}"}
    server = Server(db_url, tmp_path / "s.log")
    got, ids = [], {}

    def steer():  # while the stream is read: a run starts and ends, the long one is cancelled
        time.sleep(1.0)
        ids["chain"] = httpx.post(server.url + "/api/v1/graphs/chain/runs", headers=auth, json={}).json()["id"]
        wait_for(lambda: service.show_run(db, ids["chain"], limit=0).state == "failed", 30, "the chain to end")
        httpx.post(server.url + f"/api/v1/runs/{ids['long']}/cancel", headers=auth)

    try:
        ids["long"] = httpx.post(server.url + "/api/v1/graphs/long/runs", headers=auth, json={}).json()["id"]
        wait_for(lambda: service.show_run(db, ids["long"], limit=0).counts.get("running"), 30, "the long run to run")
        steering = threading.Thread(target=steer)
        with httpx.stream("GET", server.url + "/api/v1/events", headers=auth, timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            steering.start()
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: "):
                    got.append((time.time(), kind, json.loads(line[len("data: "):])))
                    seen = {(d["id"], d["state"]) for _, _, d in got}
                    if (ids["long"], "cancelled") in seen and (ids.get("chain"), "failed") in seen:
                        break
        steering.join()
    finally:
        server.stop()
    assert {kind for _, kind, _ in got} == {"run"}
    assert all(set(d) == {"id", "graph", "state", "counts"} for _, _, d in got)
    assert got[0][2] == {"id": ids["long"], "graph": "long", "state": "running", "counts": {"running": 1}}
    assert ended not in {d["id"] for _, _, d in got}
    chain = [(when, d) for when, _, d in got if d["id"] == ids["chain"]]
    assert chain[0][1]["state"] == "running" and chain[-1][1]["state"] == "failed"
    assert chain[-1][1]["counts"] == {"succeeded": 4, "failed": 1}
    assert [d["state"] for _, d in chain].count("failed") == 1  # the end is told once
    # its progress is told while it runs (its tracks change every 0.4 s), at most once a second
    progress = [when for when, d in chain if d["state"] == "running"]
    assert len(progress) >= 2 and all(b - a >= 0.9 for a, b in zip(progress, progress[1:])), progress
    finished = service.show_run(db, ids["chain"], limit=0).finished_at
    assert chain[-1][0] - finished.timestamp() < 1.0
    assert [d["counts"] for _, _, d in got if d["id"] == ids["long"]][-1] == {"cancelled": 1}
    db.dispose()
