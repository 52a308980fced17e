"""``GET /api/v1/events?run=ID``: server-sent events of a run's track and run state changes,
whichever process made them, each within a second of its commit. The stream polls the database
(the tracks changed since its last look, by an index) four times a second; it starts with the
run's state and counts, and ends after the run has ended."""
from __future__ import annotations

import asyncio
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

_STREAM = {"content": {"text/event-stream": {"schema": {"type": "string"}}},
           "description": "`event: run` (`{\"id\", \"state\", \"counts\"}`) first and last, and `event: track`"
                          " (`{\"run\", ...}` with the keys of a track of `runs show`) for each change"}


def _event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {simplejson.dumps(data)}\n\n".encode()


@router.get("/events", response_class=StreamingResponse, responses={**errors(404), 200: _STREAM})
async def events(request: Request, caller: auth.Viewer, run: int = Query(ge=1, le=2**63 - 1)) -> StreamingResponse:
    """Server-sent events of a run's changes: the run's state and counts first, then one event
    per track state change (started, ended, released, retried, cancelled...), and the run's
    state and counts again once it has ended, which ends the stream."""
    db = request.app.state.db
    first = await run_in_threadpool(service.run_changes, db, run, None, counts=True)  # 404 before streaming

    async def stream():
        sent: dict[int, tuple[str, int]] = {}
        since, state, quiet = first.at - OVERLAP, first.state, 0.0
        yield _event("run", {"id": run, "state": first.state, "counts": first.counts})
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
        yield _event("run", {"id": run, "state": last.state, "counts": last.counts})

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
