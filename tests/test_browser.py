"""The web UI in a real browser (Debian's chromium, driven by Playwright) against a real
`pipeline-engine serve` with its worker: log in, start a run from the form (a bad value first),
watch it finish live, read a vertex's log, cancel a long run, a viewer's page, hostile text,
and the reasons a track gives for not running. On SQLite and PostgreSQL. Screenshots of every
page go to docs/screenshots when PE_SCREENSHOTS is set (scripts/bench --ui sets it)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import IN_CI, served, unique, wait_for
from pipeline_engine import service
from pipeline_engine.schedules import spec_from

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
SHOTS = os.environ.get("PE_SCREENSHOTS")


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = sync_playwright is None or not shutil.which(CHROMIUM)
    if missing:
        why = "a browser test needs the playwright package and Debian's chromium (apt-get install chromium)"
        if IN_CI:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return sync_playwright


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory, sqlite_template):
    sync_playwright = _playwright()
    tmp = tmp_path_factory.mktemp("browser")
    with served(request, tmp, sqlite_template, "--concurrency", "4", prefix="b", roles=("viewer", "operator")) \
            as (server, db, tokens), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield Site(server, db, tokens, browser, request.param)
        browser.close()


class Site:
    def __init__(self, server, db, tokens, browser, backend):
        self.server, self.db, self.tokens, self.browser, self.backend = server, db, tokens, browser, backend

    def page(self, role: str):
        """A new browser context signed in with ``role``'s token; it fails the test on any
        dialog (an alert() that ran) or script error."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.problems = []
        page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("pageerror", lambda e: page.problems.append(f"script error: {e}"))
        page.on("console", lambda m: page.problems.append(f"console: {m.text}") if m.type == "error"
                and "status of 4" not in m.text else None)
        page.goto(self.server.url + "/login")
        page.fill("#token", self.tokens[role])
        page.click("button[type=submit]")
        page.wait_for_url(self.server.url + "/")
        return page

    def shot(self, page, name: str) -> None:
        if SHOTS and self.backend == "sqlite":
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)



def graph(site: Site, name: str, vertices, edges=(), description: str = "") -> None:
    service.import_graph(site.db, {"name": name, "description": description, "vertices": vertices,
                                   "edges": [list(e) for e in edges]}, seal=True)


def test_start_a_run_from_the_form_and_watch_it_finish_live(site):
    name = unique("report")
    graph(site, name, [
        {"name": "extract", "description": "Produce the lines", "script": "for i in $(seq 1 {rows}); do echo line $i; done",
         "inputs": {"rows": {"type": "int", "min": 1, "max": 50, "default": 5, "description": "how many lines"},
                    "mode": {"type": "choice", "choices": ["fast", "safe"], "default": "safe"}}},
        {"name": "wait", "script": "sleep 1.5; echo waited"},
        {"name": "report", "script": "echo report {mode}", "inputs": {"mode": {"type": "choice", "choices": ["fast", "safe"]}}},
    ], edges=[("extract", "wait"), ("wait", "report")])
    page = site.page("operator")
    page.goto(f"{site.server.url}/graphs/{name}/run")
    # a bad value: the page's own check stops it first...
    page.fill("input[name=rows]", "500")
    page.click("#start-form button[type=submit]")
    assert page.locator("#in-1-problem").is_visible()
    assert not service.list_runs(site.db, graph=name)
    # ...and the server's message is shown at the field when the page's check is passed by
    page.evaluate("document.querySelector('input[name=rows]').removeAttribute('max')")
    page.click("#start-form button[type=submit]")
    page.wait_for_selector(".field.invalid")
    assert "must be <= 50" in page.inner_text("[data-field=rows] .field-problem")
    assert not service.list_runs(site.db, graph=name)
    site.shot(page, "start-form")
    page.fill("input[name=rows]", "3")
    page.select_option("select[name=mode]", "fast")
    page.click("#start-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    # live: the state and the counts change without a reload
    marker = page.evaluate("window.__kept = Math.random()")
    page.wait_for_selector("#run-state .state-succeeded", timeout=30_000)
    assert page.evaluate("window.__kept") == marker  # the same document: nothing reloaded
    assert page.inner_text("[data-count=succeeded]") == "3"
    assert service.show_run(site.db, run_id, limit=0).state == "succeeded"
    # what the events said is shown as a reload would show it: every start time, no ETA left
    for vertex in ("extract", "wait", "report"):
        started = page.inner_text(f"tr[data-vertex={vertex}] .track-started")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", started), (vertex, started)
    header = page.inner_text("p.sub >> nth=0")
    assert not header.rstrip().endswith("·") and re.search(r"· finished \d{4}-\d\d-\d\d [\d:]+ UTC · took [\d.]+ s$",
                                                          header.rstrip()), header
    page.wait_for_selector("#timeline canvas")
    site.shot(page, "run")
    page.click("#tracks a:text('extract')")
    page.wait_for_selector("#log")
    assert "line 3" in page.inner_text("#log")
    site.shot(page, "log")
    assert page.problems == []


def test_a_running_log_is_followed_and_an_operator_cancels_the_run(site):
    name = unique("long")
    graph(site, name, [{"name": "slow", "script": "echo started; sleep 1; echo still here; sleep 60"}])
    run = service.start_run(site.db, name, detach=True)
    wait_for(lambda: service.show_run(site.db, run.id, limit=0).counts.get("running"), 20, "the track to start")
    page = site.page("operator")
    page.goto(f"{site.server.url}/runs/{run.id}/tracks/slow")
    # (polled from here: the page's policy forbids the eval a wait_for_function of a string needs)
    wait_for(lambda: "still here" in page.inner_text("#log"), 15, "the followed log to show the new line")
    page.goto(f"{site.server.url}/runs/{run.id}")
    page.click("form[action$='/cancel'] button")
    page.wait_for_selector("#run-state .state-cancelled", timeout=20_000)
    wait_for(lambda: service.show_run(site.db, run.id, limit=0).state == "cancelled", 20, "the run to be cancelled")
    assert page.problems == []


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(site):
    name = unique("viewed")
    graph(site, name, [{"name": "a", "script": "sleep 30"}])
    run = service.start_run(site.db, name, detach=True)
    page = site.page("viewer")
    page.goto(f"{site.server.url}/runs/{run.id}")
    assert page.locator("form[action$='/cancel']").count() == 0
    page.goto(f"{site.server.url}/graphs/{name}")
    assert page.locator("text=Start a run").count() == 0
    # a form the viewer builds by hand, with the session's own CSRF token: the role refuses it
    csrf = page.get_attribute("input[name=csrf]", "value")
    status = page.evaluate("""([id, csrf]) => fetch(`/runs/${id}/cancel`, {method: "POST",
        body: new URLSearchParams({csrf})}).then(r => r.status)""", [run.id, csrf])
    assert status == 403
    assert service.show_run(site.db, run.id, limit=0).state == "running"
    service.cancel_run(site.db, run.id)


def test_hostile_text_is_shown_as_text_and_no_script_runs(site):
    name = unique("hostile")
    graph(site, name, [{"name": "x", "description": HOSTILE, "script": "printf '%s\\n' '" + HOSTILE.replace("'", "") + "'"}],
          description=HOSTILE)
    run = service.start_run(site.db, name, detach=True)
    wait_for(lambda: service.show_run(site.db, run.id, limit=0).state != "running", 20, "the run to end")
    page = site.page("operator")
    for path in (f"/graphs/{name}", f"/runs/{run.id}", f"/runs/{run.id}/tracks/x", "/runs", "/"):
        page.goto(site.server.url + path)
        page.wait_for_timeout(300)
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(f"{site.server.url}/runs/{run.id}/tracks/x")
    assert '<script>alert("x")</script>' in page.inner_text("#log")
    page.goto(f"{site.server.url}/graphs/{name}")
    assert '<script>alert("x")</script>' in page.inner_text(".description")
    # a run name with the same text: the form refuses it, and says so as text
    page.goto(f"{site.server.url}/graphs/{name}/run")
    page.evaluate("document.getElementById('run-name').removeAttribute('pattern')")
    page.fill("#run-name", HOSTILE)
    page.click("#start-form button[type=submit]")
    page.wait_for_selector(".problem")
    assert "<script>" in page.inner_text(".problem")
    assert page.problems == []


def test_the_reasons_of_a_pooled_track_and_of_a_track_waiting_on_a_predecessor(site):
    pool, name = unique("narrow"), unique("pooled")
    service.set_pool(site.db, pool, 1)
    graph(site, name, [{"name": "first", "script": "sleep 30", "pool": pool},
                       {"name": "second", "script": "true", "pool": pool},
                       {"name": "after", "script": "true"}], edges=[("first", "after")])
    run = service.start_run(site.db, name, detach=True)
    wait_for(lambda: service.show_run(site.db, run.id, limit=0).counts.get("running"), 20, "a track to start")
    page = site.page("viewer")
    page.goto(f"{site.server.url}/runs/{run.id}")
    why = page.inner_text("#reasons")
    assert re.search(rf"pool {pool} is full \(1 of 1 slots taken, held by run {run.id}\)", why), why
    assert "waiting for first to succeed" in why, why
    site.shot(page, "run-reasons")
    # a schedule for the pages that show them (the schedules page, the graph's)
    nightly = unique("nightly")
    service.add_schedule(site.db, spec_from(nightly, name, cron="30 6 * * 1-5", timezone="Europe/Berlin"))
    for path, shot in (("/workers", "workers"), ("/pools", "pools"), ("/schedules", "schedules"),
                       (f"/graphs/{name}", "graph"), ("/runs", "runs"), ("/history", "history"), ("/", "graphs")):
        page.goto(site.server.url + path)
        page.wait_for_timeout(400)
        if shot in ("schedules", "graph"):
            assert nightly in page.inner_text("main"), shot
        site.shot(page, shot)
    service.delete_schedule(site.db, nightly)
    service.cancel_run(site.db, run.id)
    assert page.problems == []


def test_the_timeline_shows_each_attempt_retries_too(site, tmp_path):
    name, flag = unique("flaky"), tmp_path / "tried"
    graph(site, name, [{"name": "flaky", "retries": 1,
                        "script": f"if [ -e {flag} ]; then echo ok; else touch {flag}; exit 3; fi"}])
    run = service.start_run(site.db, name, detach=True)
    wait_for(lambda: service.show_run(site.db, run.id, limit=0).state == "succeeded", 30, "the retry to succeed")
    page = site.page("viewer")
    page.goto(f"{site.server.url}/runs/{run.id}")
    page.wait_for_selector("#timeline canvas")
    bars = page.evaluate(f"fetch('/runs/{run.id}/timeline.json').then(r => r.json()).then(d => d.bars)")
    assert [(b[0], b[1], b[4]) for b in bars] == [("flaky", 1, "failed"), ("flaky", 2, "succeeded")]
    assert bars[0][3] <= bars[1][2]  # the retry starts after the first attempt ended
    assert page.problems == []
