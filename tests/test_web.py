"""The web UI's pages against a real `pipeline-engine serve` process on loopback, on every
backend, without a browser: sessions, CSRF, roles, the start form's checks, escaping, the
security headers, and every page answering. tests/test_browser.py drives a real browser."""
from __future__ import annotations

import re

import httpx
import pytest

from conftest import ALL_BACKENDS, Server, served, snapshot, unique
from pipeline_engine import __version__, service
from pipeline_engine.db import Database

HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module", params=ALL_BACKENDS)
def site(request, tmp_path_factory, sqlite_template):
    tmp = tmp_path_factory.mktemp("web")
    with served(request, tmp, sqlite_template, "--no-worker", prefix="web") as (server, db, tokens):
        yield Site(server, db, tokens)


class Site:
    def __init__(self, server: Server, db: Database, tokens: dict[str, str]):
        self.server, self.db, self.tokens = server, db, tokens

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30, follow_redirects=False)

    def login(self, role: str) -> Browser:
        return Browser(self, self.client(), self.tokens[role])


def nonce_of(page: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', page).group(1)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


class Browser:
    """A client signed in through the login form, as a person's browser would be."""

    def __init__(self, site: Site, http: httpx.Client, token: str):
        self.site, self.http = site, http
        form = http.get("/login")
        r = http.post("/login", data={"token": token, "nonce": nonce_of(form.text), "next": "/"})
        assert r.status_code == 303, r.text
        self.cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("pe_session="))
        self.csrf = csrf_of(http.get("/pools").text)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict | None = None, csrf: str | None = "auto") -> httpx.Response:
        body = dict(data or {})
        if csrf == "auto":
            body["csrf"] = self.csrf
        elif csrf is not None:
            body["csrf"] = csrf
        return self.http.post(path, data=body)


def graph(site: Site, name: str, *, vertices=None, edges=(), description: str = "") -> None:
    service.import_graph(site.db, {"name": name, "description": description,
                                   "vertices": vertices or [{"name": "a", "script": "echo {rows}",
                                                             "inputs": {"rows": "int"}}],
                                   "edges": [list(e) for e in edges]}, seal=True)


def runs_of(site: Site, name: str) -> list:
    return service.list_runs(site.db, graph=name)


# --- signing in and out --------------------------------------------------------------------------

def test_a_page_without_a_session_goes_to_the_login_page_and_back_after_it(site):
    http = site.client()
    r = http.get("/runs?state=running")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/runs%3Fstate%3Drunning"
    form = http.get(r.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text and 'type="password"' in form.text
    r = http.post("/login", data={"token": site.tokens["viewer"], "nonce": nonce_of(form.text),
                                  "next": "/runs?state=running"})
    assert r.status_code == 303 and r.headers["location"] == "/runs?state=running"


def test_the_session_cookie_is_httponly_and_strict_and_only_its_digest_is_stored(site):
    http = site.client()
    form = http.get("/login")
    r = http.post("/login", data={"token": site.tokens["viewer"], "nonce": nonce_of(form.text)})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("pe_session="))
    value = re.match(r"pe_session=([^;]+);", cookie).group(1)
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP on loopback: a Secure cookie would never be sent back
    rows = repr(snapshot(site.db))
    assert value not in rows and site.tokens["viewer"] not in rows
    from pipeline_engine.service.tokens import digest
    assert digest(value) in rows


def test_a_wrong_token_is_refused_at_the_form_and_makes_no_session(site):
    before = len(snapshot(site.db)["web_session"])
    http = site.client()
    form = http.get("/login")
    r = http.post("/login", data={"token": "pe_not-a-token", "nonce": nonce_of(form.text)})
    assert r.status_code == 401 and "that token is not known" in r.text
    assert not any(c.startswith("pe_session=") for c in r.headers.get_list("set-cookie"))
    assert len(snapshot(site.db)["web_session"]) == before
    assert http.get("/").status_code == 303


def test_a_login_without_the_forms_nonce_is_refused(site):
    """A page elsewhere cannot sign a visitor in with the attacker's token (login CSRF)."""
    r = site.client().post("/login", data={"token": site.tokens["viewer"], "nonce": "forged"})
    assert r.status_code == 403 and "pe_session" not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("then", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_login_goes_back_only_to_a_page_of_this_site(site, then):
    http = site.client()
    form = http.get(f"/login?next={then}")
    r = http.post("/login", data={"token": site.tokens["viewer"], "nonce": nonce_of(form.text), "next": then})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_logout_ends_the_session_in_the_database(site):
    me = site.login("viewer")
    assert me.get("/").status_code == 200
    r = me.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # the old cookie, sent again, is no longer a session
    stale = site.client()
    stale.cookies.set("pe_session", re.match(r"pe_session=([^;]+);", me.cookie).group(1))
    assert stale.get("/").status_code == 303


def test_revoking_the_token_ends_its_sessions(site):
    name = unique("short-lived")
    _, token = service.create_token(site.db, name, "operator")
    me = Browser(site, site.client(), token)
    assert me.get("/runs").status_code == 200
    service.revoke_token(site.db, name)
    assert me.get("/runs").status_code == 303


# --- CSRF and roles --------------------------------------------------------------------------------

def test_a_form_without_its_csrf_token_changes_nothing(site):
    name = unique("csrf")
    graph(site, name)
    run = service.start_run(site.db, name, {"rows": "1"}, detach=True)
    me = site.login("operator")
    before = snapshot(site.db)
    for csrf in (None, "0" * 64):
        r = me.post(f"/runs/{run.id}/cancel", csrf=csrf)
        assert r.status_code == 403 and "CSRF" in r.text and "<html" in r.text
    r = me.post(f"/graphs/{name}/run", {"rows": "3"}, csrf=None)
    assert r.status_code == 403
    after = snapshot(site.db)
    after.pop("token"), before.pop("token")  # a token's last use may be noted
    assert after == before


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(site):
    name = unique("viewed")
    graph(site, name)
    run = service.start_run(site.db, name, {"rows": "1"}, detach=True)
    service.set_pool(site.db, unique("pool"), 2)
    me = site.login("viewer")
    for path in (f"/runs/{run.id}", f"/graphs/{name}", "/pools", "/schedules"):
        page = me.get(path).text
        assert not re.search(r"<form method=\"post\" action=\"/(?!logout)", page), path
        assert "Start a run" not in page and "Cancel" not in page
    before = snapshot(site.db)["pipeline"]
    r = me.post(f"/runs/{run.id}/cancel")  # a valid session and CSRF token: the role refuses it
    assert r.status_code == 403 and "role viewer" in r.text
    assert me.post(f"/graphs/{name}/run", {"rows": "2"}).status_code == 403
    assert snapshot(site.db)["pipeline"] == before


def test_an_operator_cancels_a_run_from_its_page(site):
    name = unique("cancel")
    graph(site, name)
    run = service.start_run(site.db, name, {"rows": "1"}, detach=True)
    me = site.login("operator")
    page = me.get(f"/runs/{run.id}").text
    assert f'action="/runs/{run.id}/cancel"' in page
    r = me.post(f"/runs/{run.id}/cancel")
    assert r.status_code == 303 and r.headers["location"] == f"/runs/{run.id}"
    assert service.show_run(site.db, run.id, limit=0).state == "cancelled"
    audit = service.list_audit(site.db, limit=20)
    assert any(e.actor == "web-operator" and e.action == "run.cancel" and e.target == str(run.id) for e in audit)


def test_the_api_reads_with_a_session_but_never_changes_with_one_alone(site):
    name = unique("apicookie")
    graph(site, name)
    run = service.start_run(site.db, name, {"rows": "1"}, detach=True)
    me = site.login("admin")
    assert me.get(f"/api/v1/runs/{run.id}").status_code == 200
    r = me.http.post(f"/api/v1/runs/{run.id}/cancel")
    assert r.status_code == 401
    assert service.show_run(site.db, run.id, limit=0).state == "running"


# --- the start form ---------------------------------------------------------------------------------

TYPED = [
    {"name": "load", "script": "echo {rows} {mode} {verbose} {key} {day}", "description": "loads",
     "inputs": {"rows": {"type": "int", "min": 1, "max": 100, "default": 10, "description": "how many rows"},
                "mode": {"type": "choice", "choices": ["fast", "safe"], "default": "safe"},
                "verbose": {"type": "bool", "default": False},
                "key": {"type": "str", "pattern": "[a-z]+", "required": False},
                "day": {"type": "str", "default": "2026-01-01"}}},
    {"name": "report", "script": "echo {day}", "inputs": {"day": {"type": "int", "default": 1}}},
]


def test_the_start_form_has_a_control_per_input_by_type(site):
    name = unique("typed")
    graph(site, name, vertices=TYPED, edges=[("load", "report")])
    page = site.login("operator").get(f"/graphs/{name}/run").text
    assert re.search(r'<input[^>]+name="rows" type="number"[^>]*step="1" min="1" max="100"', page)
    assert re.search(r'<select[^>]+name="mode"', page) and '<option value="safe" selected>' in page
    assert re.search(r'<input[^>]+name="verbose" type="checkbox"', page)
    assert re.search(r'<input[^>]+name="key" type="text"[^>]*pattern="\[a-z\]\+"', page)
    assert "how many rows" in page and 'value="10"' in page
    # one name, two types: a field per vertex
    assert 'name="load.day"' in page and 'name="report.day"' in page and 'name="day"' not in page


def field(page: str, key: str) -> str:
    """The start form's block of the field ``key``: its control, hint and problem."""
    return re.search(rf'data-field="{re.escape(key)}".*?(?=data-field=|</form>)', page, re.S).group(0)


def test_a_bad_value_shows_the_servers_message_at_its_field_and_starts_nothing(site):
    name = unique("badform")
    graph(site, name, vertices=TYPED, edges=[("load", "report")])
    me = site.login("operator")
    before = snapshot(site.db)["pipeline"]
    r = me.post(f"/graphs/{name}/run", {"rows": "500", "mode": "safe", "report.day": "x"})
    assert r.status_code == 422
    rows = field(r.text, "rows")
    assert 'aria-invalid="true"' in rows and "input &#39;rows&#39;: must be &lt;= 100" in rows
    day = field(r.text, "report.day")
    assert 'aria-invalid="true"' in day
    assert 'value="500"' in r.text  # what was sent is kept
    assert snapshot(site.db)["pipeline"] == before


def test_a_good_form_starts_the_run_and_goes_to_its_page(site):
    name = unique("goodform")
    graph(site, name, vertices=TYPED, edges=[("load", "report")])
    me = site.login("operator")
    r = me.post(f"/graphs/{name}/run", {"rows": "7", "mode": "fast", "verbose": "true", "report.day": "3",
                                        "load.day": "2026-02-02", "name": "from-the-form"})
    assert r.status_code == 303, r.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    run = service.show_run(site.db, run_id, limit=0)
    assert run.name == "from-the-form" and run.trigger == "api" and run.started_by == "web-operator"
    assert run.parameters == {"rows": "7", "mode": "fast", "verbose": "true", "report.day": "3",
                              "load.day": "2026-02-02"}
    page = me.get(r.headers["location"])
    assert page.status_code == 200 and "from-the-form" in page.text


def test_a_hostile_run_name_is_refused_and_shown_as_text(site):
    name = unique("hostname")
    graph(site, name)
    r = site.login("operator").post(f"/graphs/{name}/run", {"rows": "1", "name": HOSTILE})
    assert r.status_code == 422
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;" in r.text
    assert not runs_of(site, name)


# --- what pages show ----------------------------------------------------------------------------------

def test_what_users_wrote_reaches_pages_as_text(site):
    name = unique("hostile")
    graph(site, name, description=HOSTILE,
          vertices=[{"name": "x", "description": HOSTILE, "script": "echo '" + HOSTILE.replace("'", "") + "'"}])
    run = service.start_run(site.db, name, detach=True)
    me = site.login("viewer")
    for path in ("/", f"/graphs/{name}", f"/runs/{run.id}", f"/runs/{run.id}/tracks/x", "/runs"):
        page = me.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
    assert "&lt;script&gt;alert" in me.get(f"/graphs/{name}").text


def test_every_page_has_a_policy_against_inline_script_and_none_of_its_own(site):
    name = unique("csp")
    graph(site, name)
    run = service.start_run(site.db, name, {"rows": "1"}, detach=True)
    me = site.login("admin")
    assert "script-src 'self'" in site.client().get("/login").headers["content-security-policy"]
    for path in ("/", f"/graphs/{name}", f"/graphs/{name}/run", "/runs", f"/runs/{run.id}",
                 f"/runs/{run.id}/tracks/a", "/workers", "/pools", "/schedules", "/history", "/runs/999999"):
        r = me.get(path)
        policy = r.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert r.headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script\b[^>]*>", r.text)
        assert scripts and all(re.search(r'\bsrc="/static/', s) for s in scripts), (path, scripts)
        assert not re.search(r"<[a-z][^>]*\son[a-z]+=", r.text), path  # no inline event handler either
        assert 'href="javascript:' not in r.text


def test_every_page_answers_for_a_viewer(site):
    name, pool = unique("pages"), unique("p")
    service.set_pool(site.db, pool, 1)
    graph(site, name, vertices=[{"name": "a", "script": "true", "pool": pool},
                                {"name": "b", "script": "true"}], edges=[("a", "b")])
    run = service.start_run(site.db, name, detach=True)
    me = site.login("viewer")
    for path in ("/", f"/graphs/{name}", f"/graphs/{name}?version=1", f"/graphs/{name}/run", "/runs",
                 f"/runs?graph={name}&state=running", "/runs?trigger=api", f"/runs/{run.id}", f"/runs/{run.id}/tracks/a",
                 "/workers", "/pools", "/schedules", "/history", f"/history?graph={name}",
                 f"/history?graph={name}&vertex=a"):
        r = me.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        # the footer's version is the engine's, whatever a page's own `version` is (a graph's)
        assert f"pipeline_engine {__version__} ·" in r.text, path
    page = me.get(f"/runs/{run.id}").text
    assert "critical path: a → b" in page and "about 2.0 s left" in page
    dag = me.get(f"/graphs/{name}/dag.json").json()
    assert [(v["name"], v["level"]) for v in dag["vertices"]] == [("a", 0), ("b", 1)]
    assert dag["critical"] == ["a", "b"] and dag["edges"] == [["a", "b"]]
    timeline = me.get(f"/runs/{run.id}/timeline.json").json()
    assert timeline["run"] == run.id and timeline["bars"] == []  # nothing has started: no worker


@pytest.mark.parametrize("path, status", [("/graphs/nope", 404), ("/runs/99999999", 404), ("/runs/0", 404),
                                          ("/runs/x", 422), ("/graphs/nope/run", 404),
                                          ("/runs?state=bogus", 422)])
def test_a_bad_address_is_a_page_that_says_why(site, path, status):
    r = site.login("viewer").get(path)
    assert r.status_code == status and "<html" in r.text and "Traceback" not in r.text


def test_the_server_says_where_to_log_in(site):
    assert f"web UI: log in at {site.server.url}/login" in site.server.text()


def test_a_graph_too_big_to_draw_is_drawn_by_levels_and_by_neighbourhood(site):
    name = unique("wide")
    vertices = [{"name": f"v{i}", "script": "true"} for i in range(500)]
    edges = [(f"v{i}", f"v{i + 100}") for i in range(400)]
    graph(site, name, vertices=vertices, edges=edges)
    me = site.login("viewer")
    whole = me.get(f"/graphs/{name}/dag.json").json()
    assert whole["vertices"] == [] and [lv["vertices"] for lv in whole["levels"]] == [100] * 5
    near = me.get(f"/graphs/{name}/dag.json?around=v150&depth=2").json()
    assert sorted(v["name"] for v in near["vertices"]) == ["v150", "v250", "v350", "v50"]
    assert near["around"] == "v150"
    assert me.get(f"/graphs/{name}/dag.json?around=nope").status_code == 404


def test_a_pool_is_resized_by_an_editor_only(site):
    pool = unique("pool")
    service.set_pool(site.db, pool, 2)
    assert site.login("operator").post(f"/pools/{pool}", {"size": "5"}).status_code == 403
    editor = site.login("editor")
    assert editor.post(f"/pools/{pool}", {"size": "x"}).status_code == 422
    assert editor.post(f"/pools/{pool}", {"size": "5"}).status_code == 303
    assert {p.name: p.size for p in service.list_pools(site.db)}[pool] == 5


def test_an_editor_checks_and_seals_a_draft_from_its_page(site):
    name = unique("draft")
    service.import_graph(site.db, {"name": name, "vertices": [{"name": "a", "script": "true"}]})
    editor = site.login("editor")
    assert 'action="/graphs/%s/check"' % name in editor.get(f"/graphs/{name}").text
    assert editor.post(f"/graphs/{name}/check").status_code == 303
    assert editor.post(f"/graphs/{name}/seal").status_code == 303
    assert service.show_graph(site.db, name).info.status == "sealed"
    r = editor.post(f"/graphs/{name}/seal")  # sealed already: the service's refusal, as a page
    assert r.status_code == 409 and "<html" in r.text



def test_an_operator_retries_a_failed_run_and_pauses_and_resumes_a_schedule(site):
    from pipeline_engine.schedules import spec_from

    name = unique("again")
    graph(site, name)
    run = service.start_run(site.db, name, {"rows": "1"}, detach=True)
    service.cancel_run(site.db, run.id)
    service.add_schedule(site.db, spec_from(unique("nightly"), name, cron="0 3 * * *", parameters={"rows": 1}))
    schedule = service.list_schedules(site.db, graph=name)[0].name
    viewer, operator = site.login("viewer"), site.login("operator")
    assert 'action="/runs/%d/retry"' % run.id in operator.get(f"/runs/{run.id}").text
    assert viewer.post(f"/runs/{run.id}/retry").status_code == 403
    assert operator.post(f"/runs/{run.id}/retry").status_code == 303
    assert service.show_run(site.db, run.id, limit=0).state == "running"
    page = operator.get("/schedules").text
    assert f'action="/schedules/{schedule}/pause"' in page and "03:00" in page
    assert viewer.post(f"/schedules/{schedule}/pause").status_code == 403
    assert operator.post(f"/schedules/{schedule}/pause").status_code == 303
    assert service.show_schedule(site.db, schedule).paused
    assert f'action="/schedules/{schedule}/resume"' in operator.get("/schedules").text
    assert operator.post(f"/schedules/{schedule}/resume").status_code == 303
    assert not service.show_schedule(site.db, schedule).paused
    assert operator.post(f"/schedules/{schedule}/explode").status_code == 404
