"""The pages: server-rendered HTML over the same service calls as the API. Reads answer GET;
every change is a POST of a form that carries the session's CSRF token, needs the role the
API's route needs, and goes back to the page it came from (303), or shows the page again with
the service's message. Big runs and graphs are paged and aggregated in SQL: a page never loads
a whole 10,000-track run to draw a summary."""
from __future__ import annotations

import math
from datetime import datetime, timezone

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pipeline_engine import forms, service
from pipeline_engine.errors import NotFoundError, ParameterError, PipelineEngineError, SecretsNeedOwnerError
from pipeline_engine.roles import Role
from pipeline_engine.schedules import Trigger
from pipeline_engine.service import history as past
from pipeline_engine.service import pages as reads
from pipeline_engine.states import PIPELINE_FINISHED, TRACK_FINISHED, PipelineState, TrackState
from pipeline_engine.web import auth
from pipeline_engine.web.render import render

router = APIRouter(include_in_schema=False)

_ID = 2**63 - 1
#: tracks per page of a run, vertices per page of a graph, runs per page of the list
TRACKS_PAGE = 200
VERTICES_PAGE = 100
RUNS_PAGE = 50
_FINISHED = {str(s) for s in TRACK_FINISHED}


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


async def _act(request: Request, caller: auth.Viewer, role: Role, call, *args, back: str, **kwargs) -> Response:
    """A form's change: its CSRF token and the caller's role checked, ``call`` made as the
    caller (the audit log names the token), then back to ``back``."""
    await auth.acting(request, caller, role)
    with auth.as_actor(caller):
        await run_in_threadpool(call, request.app.state.db, *args, **kwargs)
    return _back(back)


def _pages(total: int, size: int) -> int:
    return max(1, math.ceil(total / size))


# --- signing in and out -------------------------------------------------------------------------

@router.get("/login")
def login_page(request: Request, next: str = Query("/", max_length=2000)) -> Response:
    if auth.caller_of(request) is not None:
        return _back(auth.safe_next(next))
    return _login_form(request, next, None, 200)


def _login_form(request: Request, then: str, problem: str | None, status: int) -> Response:
    import secrets

    nonce = secrets.token_urlsafe(16)
    response = render(request, "login.html", None, status=status, then=auth.safe_next(then), nonce=nonce,
                      problem=problem)
    response.set_cookie(auth.LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/login",
                        secure=request.url.scheme == "https")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    then = str(form.get("next") or "/")
    nonce = request.cookies.get(auth.LOGIN_COOKIE)
    if not nonce or form.get("nonce") != nonce:
        return _login_form(request, then, "the login form had expired: give the token again", 403)
    token = str(form.get("token") or "")
    try:
        cookie, info = await run_in_threadpool(service.sign_in, request.app.state.db, token)
    except PipelineEngineError as exc:
        if exc.http_status != 401:
            raise
        return _login_form(request, then, "that token is not known (revoked, or never made)", 401)
    response = _back(auth.safe_next(then))
    response.set_cookie(auth.COOKIE, cookie, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https", max_age=int(service.sessions.LIFETIME.total_seconds()))
    response.delete_cookie(auth.LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, caller: auth.Page) -> Response:
    await auth.acting(request, caller, Role.viewer)
    await run_in_threadpool(service.sign_out, request.app.state.db, request.cookies.get(auth.COOKIE, ""))
    response = _back("/login")
    response.delete_cookie(auth.COOKIE, path="/")
    return response


# --- graphs -----------------------------------------------------------------------------------

@router.get("/")
def graphs_page(request: Request, caller: auth.Page) -> Response:
    db = request.app.state.db
    return render(request, "graphs.html", caller, graphs=past.graph_overview(db, service.list_graphs(db)))


@router.get("/graphs/{name}")
def graph_page(request: Request, caller: auth.Page, name: str, version: int | None = Query(None, ge=1, le=2**31),
               q: str = Query("", max_length=200), page: int = Query(1, ge=1, le=2**31)) -> Response:
    db = request.app.state.db
    detail = service.show_graph(db, name, version=version)
    versions = service.list_versions(db, name)
    found = [v for v in detail.spec.vertices if q.lower() in v.name.lower()] if q else list(detail.spec.vertices)
    shown = found[(page - 1) * VERTICES_PAGE:page * VERTICES_PAGE]
    durations = past.vertex_durations(db, name, names=[v.name for v in shown])
    schedules = [(s, service.next_fire_times(db, s.name, 3) if not s.paused else [])
                 for s in service.list_schedules(db, graph=name)]
    query = f"?version={detail.info.version}" if version is not None else ""
    return render(request, "graph.html", caller, graph=detail.info, vertices=shown, total=len(found), q=q,
                  page=page, pages=_pages(len(found), VERTICES_PAGE), versions=versions, durations=durations,
                  schedules=schedules, dag_url=f"/graphs/{name}/dag.json{query}",
                  sealed=any(v.status == "sealed" for v in versions))


@router.get("/graphs/{name}/dag.json")
def graph_dag(request: Request, caller: auth.Page, name: str, version: int | None = Query(None, ge=1, le=2**31),
              around: str | None = Query(None, max_length=200), depth: int = Query(2, ge=1, le=6)) -> JSONResponse:
    drawing = reads.graph_drawing(request.app.state.db, name, version=version, around=around, depth=depth)
    return JSONResponse(drawing.to_dict())


@router.post("/graphs/{name}/check")
async def check_graph(request: Request, caller: auth.Page, name: str) -> Response:
    return await _act(request, caller, Role.editor, service.check_graph, name, back=f"/graphs/{name}")


@router.post("/graphs/{name}/seal")
async def seal_graph(request: Request, caller: auth.Page, name: str) -> Response:
    return await _act(request, caller, Role.editor, service.seal_graph, name, back=f"/graphs/{name}")


@router.post("/graphs/{name}/copy")
async def copy_graph(request: Request, caller: auth.Page, name: str) -> Response:
    form = await auth.acting(request, caller, Role.editor)
    new_name = form.get("new_name", "").strip()
    with auth.as_actor(caller):
        await run_in_threadpool(service.copy_graph, request.app.state.db, name, new_name)
    return _back(f"/graphs/{new_name}")


# --- starting a run ------------------------------------------------------------------------------

@router.get("/graphs/{name}/run")
def start_page(request: Request, caller: auth.Page, name: str,
               version: int | None = Query(None, ge=1, le=2**31)) -> Response:
    db = request.app.state.db
    runs_version, fields = reads.start_fields(db, name, version=version)
    return render(request, "start.html", caller, name=name, version=runs_version, fields=fields, values={},
                  problems={}, general=[], run_name="", pinned=version is not None)


@router.post("/graphs/{name}/run")
async def start(request: Request, caller: auth.Page, name: str,
                version: int | None = Query(None, ge=1, le=2**31)) -> Response:
    form = await auth.acting(request, caller, Role.operator)
    db = request.app.state.db
    runs_version, fields = await run_in_threadpool(reads.start_fields, db, name, version=version)
    parameters = forms.parameters(form, fields)
    run_name = form.get("name", "").strip() or None
    try:
        with auth.as_actor(caller):
            run = await run_in_threadpool(_start, request, name, parameters, run_name, version)
    except ParameterError as exc:
        problems: dict[str, list[str]] = {}
        general: list[str] = []
        for line in exc.problems or [exc.message]:
            key = forms.field_of(line, fields)
            (problems.setdefault(key, []) if key else general).append(line)
        shown = {k: v for k, v in form.items() if not any(f.key == k and f.spec.secret for f in fields)}
        return render(request, "start.html", caller, status=422, name=name, version=runs_version, fields=fields,
                      values=shown, problems=problems, general=general, run_name=run_name or "",
                      pinned=version is not None)
    return _back(f"/runs/{run.id}")


def _start(request: Request, name: str, parameters: dict, run_name: str | None, version: int | None):
    """A start as the API's: workers run it; a graph with secrets is run by this server's worker."""
    from pipeline_engine.api.runs import start_owned

    db = request.app.state.db
    try:
        return service.start_run(db, name, parameters, name=run_name, version=version, detach=True,
                                 trigger=Trigger.API)
    except SecretsNeedOwnerError as exc:
        return start_owned(db, request.app.state.worker, name, parameters, run_name, version, exc)


# --- runs -----------------------------------------------------------------------------------------

@router.get("/runs")
def runs_page(request: Request, caller: auth.Page, graph: str | None = Query(None, max_length=200),
              state: PipelineState | None = None, trigger: Trigger | None = None,
              page: int = Query(1, ge=1, le=2**31)) -> Response:
    db = request.app.state.db
    runs = service.list_runs(db, graph=graph or None, state=None if state is None else state.value,
                             trigger=None if trigger is None else trigger.value,
                             limit=RUNS_PAGE + 1, offset=(page - 1) * RUNS_PAGE)
    return render(request, "runs.html", caller, runs=runs[:RUNS_PAGE], more=len(runs) > RUNS_PAGE, page=page,
                  graph=graph or "", state=state.value if state else "", trigger=trigger.value if trigger else "",
                  states=[str(s) for s in PipelineState], triggers=[str(t) for t in Trigger],
                  graphs=[g.name for g in service.list_graphs(db)])


@router.get("/runs/{run_id}")
def run_page(request: Request, caller: auth.Page, run_id: int, state: TrackState | None = None,
             page: int = Query(1, ge=1, le=2**31)) -> Response:
    if not 1 <= run_id <= _ID:
        raise NotFoundError(f"run {run_id} not found")
    db = request.app.state.db
    wanted = None if state is None else state.value
    run = service.show_run(db, run_id, limit=TRACKS_PAGE, offset=(page - 1) * TRACKS_PAGE, state=wanted, output=False)
    total = run.counts.get(wanted, 0) if wanted else run.total
    waiting = service.show_run(db, run_id, limit=TRACKS_PAGE, state="pending", output=False).tracks
    blocked = service.show_run(db, run_id, limit=TRACKS_PAGE, state="waiting", output=False).tracks
    eta = reads.run_eta(db, run_id)
    return render(request, "run.html", caller, run=run, tracks=run.tracks, total=total, page=page,
                  pages=_pages(total, TRACKS_PAGE), state=wanted or "", states=[str(s) for s in TrackState],
                  not_running=[*waiting, *blocked][:TRACKS_PAGE], eta=eta,
                  finished=run.state in {str(s) for s in PIPELINE_FINISHED},
                  may_retry=run.state in ("failed", "cancelled"),
                  may_cancel=run.state in ("running", "queued"))


@router.get("/runs/{run_id}/timeline.json")
def run_timeline(request: Request, caller: auth.Page, run_id: int) -> JSONResponse:
    if not 1 <= run_id <= _ID:
        raise NotFoundError(f"run {run_id} not found")
    return JSONResponse(reads.run_timeline(request.app.state.db, run_id))


@router.post("/runs/{run_id}/cancel")
async def cancel_run(request: Request, caller: auth.Page, run_id: int) -> Response:
    return await _act(request, caller, Role.operator, service.cancel_run, run_id, back=f"/runs/{run_id}")


@router.post("/runs/{run_id}/retry")
async def retry_run(request: Request, caller: auth.Page, run_id: int) -> Response:
    return await _act(request, caller, Role.operator, service.retry_run, run_id, detach=True,
                      back=f"/runs/{run_id}")


@router.get("/runs/{run_id}/tracks/{vertex}")
def track_page(request: Request, caller: auth.Page, run_id: int, vertex: str) -> Response:
    from pipeline_engine.api.runs import log_bytes

    if not 1 <= run_id <= _ID:
        raise NotFoundError(f"run {run_id} not found")
    db = request.app.state.db
    run = service.show_run(db, run_id, limit=0, output=False)
    track = service.track_output(db, run_id, vertex)
    data, source = log_bytes(db, request.app.state.logs, run_id, vertex, track, 0)
    return render(request, "track.html", caller, run=run, track=track, log=data.decode("utf-8", "replace"),
                  offset=len(data), source=source, following=track.state not in _FINISHED,
                  log_url=f"/api/v1/runs/{run_id}/tracks/{vertex}/log")


# --- workers, pools, schedules, history ------------------------------------------------------------

@router.get("/workers")
def workers_page(request: Request, caller: auth.Page) -> Response:
    now = datetime.now(timezone.utc)
    return render(request, "workers.html", caller, workers=service.list_workers(request.app.state.db), now=now)


@router.get("/pools")
def pools_page(request: Request, caller: auth.Page) -> Response:
    return render(request, "pools.html", caller, pools=service.list_pools(request.app.state.db))


@router.post("/pools/{name}")
async def resize_pool(request: Request, caller: auth.Page, name: str) -> Response:
    form = await auth.acting(request, caller, Role.editor)
    raw = form.get("size", "")
    try:
        size = int(raw)
    except ValueError:
        raise ParameterError(f"pool '{name}': size must be a whole number, got {raw[:40]!r}") from None
    with auth.as_actor(caller):
        await run_in_threadpool(service.set_pool, request.app.state.db, name, size)
    return _back("/pools")


@router.get("/schedules")
def schedules_page(request: Request, caller: auth.Page) -> Response:
    db = request.app.state.db
    rows = [(s, service.next_fire_times(db, s.name, 3) if not s.paused else [],
             service.schedule_history(db, s.name, 3)) for s in service.list_schedules(db)]
    return render(request, "schedules.html", caller, schedules=rows)


@router.post("/schedules/{name}/{action}")
async def steer_schedule(request: Request, caller: auth.Page, name: str, action: str) -> Response:
    if action not in ("pause", "resume"):
        raise NotFoundError(f"no action '{action}' for schedules: pause or resume")
    call = service.pause_schedule if action == "pause" else service.resume_schedule
    return await _act(request, caller, Role.operator, call, name, back="/schedules")


@router.get("/history")
def history_page(request: Request, caller: auth.Page, graph: str | None = Query(None, max_length=200),
                 vertex: str | None = Query(None, max_length=200),
                 days: int = Query(30, ge=1, le=366)) -> Response:
    db = request.app.state.db
    history = past.run_history(db, days=days, graph=graph or None)
    trend = past.vertex_trend(db, graph, vertex) if graph and vertex else None
    return render(request, "history.html", caller, history=history, graph=graph or "", vertex=vertex or "",
                  days=days, trend=trend, graphs=[g.name for g in service.list_graphs(db)])

