"""``GET /api/v1/events?run=ID``: server-sent events of a run's track and run state changes,
whichever process made them, each within a second of its commit. The stream polls the database
(the tracks changed since its last look, by an index) four times a second; it starts with the
run's state and counts, and ends after the run has ended.

``GET /api/v1/events`` (no ``run``): every run's ``run`` events, for a dashboard of runs — the
running runs first, then a run's event when it starts, changes state or ends, and while its
tracks change at most once a second. It does not end. A run's track events are its own stream's."""
from __future__ import annotations

import asyncio
import collections
import time
from datetime import timedelta

import simplejson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from pipeline_engine import service
from pipeline_engine.api import auth
from pipeline_engine.api.system import errors
from pipeline_engine.states import PipelineState

router = APIRouter(tags=["runs"])

#: seconds between the stream's looks
POLL = 0.25
#: how far back each look reads again: a change committed late (its transaction began before
#: the previous look), or stamped by a writer whose clock is a little behind, is still seen;
#: what was sent already is not sent again
OVERLAP = timedelta(seconds=5)
#: seconds between comments that keep an idle connection open through proxies
KEEPALIVE = 15.0
#: with every run's events: seconds at least between two events of a run whose tracks change
PROGRESS = 1.0

_STREAM = {"content": {"text/event-stream": {"schema": {"type": "string"}}},
           "description": "with `run`: `event: run` (`{\"id\", \"state\", \"counts\", \"started_at\", \"finished_at\"}`) first and last, and"
                          " `event: track` (`{\"run\", ...}` with the keys of a track of `runs show`) for each"
                          " change. Without: `event: run` (`{\"id\", \"graph\", \"state\", \"counts\"}`) for each"
                          " running run, then for each run that starts, changes state, or (at most once a"
                          " second) whose tracks change"}


def _event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {simplejson.dumps(data)}\n\n".encode()


@router.get("/events", response_class=StreamingResponse, responses={**errors(404), 200: _STREAM})
async def events(request: Request, caller: auth.Viewer,
                 run: int | None = Query(None, ge=1, le=2**63 - 1,
                                         description="one run's events, ending with it (default: every run's"
                                                     " run events, without end)")) -> StreamingResponse:
    """Server-sent events of a run's changes: the run's state and counts first, then one event
    per track state change (started, ended, released, retried, cancelled...), and the run's
    state and counts again once it has ended, which ends the stream. Without `run`, the state
    and counts of every run: those running first, then a run's whenever it starts, changes
    state or ends, and at most once a second while its tracks change."""
    if run is None:
        return _streaming(_every_run(request))
    db = request.app.state.db
    first = await run_in_threadpool(service.run_changes, db, run, None, counts=True)  # 404 before streaming

    async def stream():
        sent: dict[int, tuple[str, int]] = {}
        since, state, quiet = first.at - OVERLAP, first.state, 0.0
        yield _event("run", first.to_dict())
        while state == PipelineState.RUNNING:
            await asyncio.sleep(POLL)
            if await request.is_disconnected():
                return
            now = await run_in_threadpool(service.run_changes, db, run, since)
            for track_id, track, _ in now.tracks:
                key = (track.state, track.attempt)
                if sent.get(track_id) != key:
                    sent[track_id] = key
                    quiet = 0.0
                    yield _event("track", {"run": run, **track.to_dict()})
            since = max(since, now.at - OVERLAP)
            state = now.state
            quiet += POLL
            if quiet >= KEEPALIVE:
                quiet = 0.0
                yield b": keepalive\n\n"
        last = await run_in_threadpool(service.run_changes, db, run, since, counts=True)
        for track_id, track, _ in last.tracks:  # what ended with the run
            if sent.get(track_id) != (track.state, track.attempt):
                yield _event("track", {"run": run, **track.to_dict()})
        yield _event("run", last.to_dict())

    return _streaming(stream())


def _streaming(stream) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _every_run(request: Request):
    """The stream of every run's events (see the module's docstring). New runs are those over
    the newest run id seen ``OVERLAP`` ago: a run whose id was taken before another's but which
    committed after it is still seen, even if it ended at once."""
    db = request.app.state.db
    at, newest, runs = await run_in_threadpool(service.runs_activity, db, None)
    #: run id -> (state, changes mark, when sent: monotonic seconds) of its last event
    sent: dict[int, tuple[str, tuple, float]] = {}
    #: (monotonic seconds, the newest run id then), oldest first: ``after`` is the one OVERLAP ago
    newest_seen = collections.deque([(time.monotonic(), newest)])

    async def send(due: list) -> list[bytes]:
        counts = await run_in_threadpool(service.run_counts, db, [r.id for r in due]) if due else {}
        now = time.monotonic()
        for r in due:
            sent[r.id] = (r.state, r.changes, now)
        return [_event("run", {"id": r.id, "graph": r.graph, "state": r.state, "counts": counts[r.id]}) for r in due]

    for event in await send(runs):
        yield event
    since, after, quiet = at - OVERLAP, newest, 0.0
    while True:
        await asyncio.sleep(POLL)
        if await request.is_disconnected():
            return
        running = [i for i, (state, _, _) in sent.items() if state == PipelineState.RUNNING]
        at, newest, runs = await run_in_threadpool(service.runs_activity, db, since, known=running, after=after)
        now = time.monotonic()
        due = [r for r in runs if (prev := sent.get(r.id)) is None or prev[0] != r.state
               or prev[1] != r.changes and r.state == PipelineState.RUNNING and now - prev[2] >= PROGRESS]
        events_now = await send(due)
        for event in events_now:
            yield event
        since = max(since, at - OVERLAP)
        newest_seen.append((now, newest))
        while len(newest_seen) > 1 and newest_seen[1][0] <= now - OVERLAP.total_seconds():
            newest_seen.popleft()
        after = newest_seen[0][1]
        returned = {r.id for r in runs}
        for i in [i for i, (state, _, _) in sent.items()
                  if state != PipelineState.RUNNING and i <= after or state == PipelineState.RUNNING and i not in returned]:
            del sent[i]  # ended and no longer read as new, or deleted
        quiet = 0.0 if events_now else quiet + POLL
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield b": keepalive\n\n"
