"""Schedules over HTTP: list and read them (with their next fire times and decisions), create or
change one (editor), pause and resume (operator), delete (editor). The JSON is the CLI's."""
from __future__ import annotations

from typing import Annotated, Union

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from pipeline_engine import schedules, service
from pipeline_engine.api import auth
from pipeline_engine.api.system import NAME_PATTERN, errors

router = APIRouter(tags=["schedules"])

Name = Annotated[str, Path(max_length=200, pattern=NAME_PATTERN)]
Value = Union[StrictBool, StrictInt, StrictFloat, str]


class ScheduleBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    graph: str = Field(max_length=200, pattern=NAME_PATTERN, description="the graph it runs (its newest sealed"
                                                                         " version)")
    cron: str | None = Field(None, max_length=255, description="five fields, or @hourly, @daily...")
    every: str | None = Field(None, max_length=32, description="an interval instead of cron: 30s, 15m, 1h30m, 1d")
    timezone: str = Field("UTC", max_length=64, description="the IANA zone cron is read in")
    parameters: dict[str, Value] = Field(default_factory=dict, description="input name (or VERTEX.name) -> value;"
                                         " {fire_at}, {fire_date}, {fire_time} are filled in")
    catchup: str = Field("latest", json_schema_extra={"enum": ["none", "latest", "all"]})
    max_catchup: int = Field(10, ge=1, le=schedules.MAX_CATCHUP_LIMIT)
    overlap: str = Field("skip", json_schema_extra={"enum": ["allow", "skip", "queue", "cancel"]})
    start: str | None = Field(None, max_length=64, description="ISO 8601; without an offset, in the zone")
    end: str | None = Field(None, max_length=64)


@router.get("/schedules", responses=errors())
def list_schedules(request: Request, caller: auth.Viewer) -> list[dict]:
    """Every schedule, as `schedule list --json`."""
    return [x.to_dict() for x in service.list_schedules(request.app.state.db)]


@router.get("/schedules/{name}", responses=errors(404))
def show_schedule(name: Name, request: Request, caller: auth.Viewer) -> dict:
    """A schedule with its next 5 fire times (`next`: each in its zone and in UTC) and its last 5
    decisions (`history`), as `schedule show --json`."""
    return service.schedule_detail(request.app.state.db, name)


@router.get("/schedules/{name}/history", responses=errors(404))
def schedule_history(name: Name, request: Request, caller: auth.Viewer,
                     limit: int = Query(20, ge=1, le=10_000)) -> list[dict]:
    """The decisions taken for its fire times, newest first, as `schedule history --json`."""
    return [d.to_dict() for d in service.schedule_history(request.app.state.db, name, limit)]


@router.put("/schedules/{name}", responses={**errors(404, 409), 201: {"description": "created"}})
def set_schedule(name: Name, body: ScheduleBody, request: Request, response: Response, caller: auth.Editor) -> dict:
    """Create a schedule (201) or change it (200). Its graph's inputs must all be filled, none
    a secret; every field is checked as `schedule add` checks it."""
    spec = schedules.spec_from(name, body.graph, cron=body.cron, every=body.every, timezone=body.timezone,
                               parameters=body.parameters, catchup=body.catchup, max_catchup=body.max_catchup,
                               overlap=body.overlap, start=body.start, end=body.end)
    info, created = service.set_schedule(request.app.state.db, spec)
    response.status_code = 201 if created else 200
    return info.to_dict()


@router.post("/schedules/{name}/pause", responses=errors(404))
def pause_schedule(name: Name, request: Request, caller: auth.Operator) -> dict:
    """Stop deciding its fire times."""
    return service.pause_schedule(request.app.state.db, name).to_dict()


@router.post("/schedules/{name}/resume", responses=errors(404))
def resume_schedule(name: Name, request: Request, caller: auth.Operator) -> dict:
    """Decide its fire times again, from the next one."""
    return service.resume_schedule(request.app.state.db, name).to_dict()


@router.delete("/schedules/{name}", status_code=204, responses=errors(404))
async def delete_schedule(name: Name, request: Request, caller: auth.Editor) -> Response:
    """Delete a schedule and its history (the runs it made stay)."""
    await run_in_threadpool(service.delete_schedule, request.app.state.db, name)
    return Response(status_code=204)


class BackfillBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    start: str = Field(alias="from", max_length=64, description="ISO 8601: fire times at or after this")
    end: str = Field(alias="to", max_length=64, description="ISO 8601: fire times before this")
    schedule: str | None = Field(None, max_length=200, pattern=NAME_PATTERN,
                                 description="the fire times, zone and parameters of this schedule")
    cron: str | None = Field(None, max_length=255, description="or the fire times of this expression")
    timezone: str = Field("UTC", max_length=64)
    parameters: dict[str, Value] = Field(default_factory=dict)
    max_active: int = Field(1, ge=1, le=1000)
    dry_run: bool = False


@router.post("/graphs/{name}/backfill", status_code=201, responses={**errors(404, 409),
                                                                    200: {"description": "a dry run"}})
def backfill(name: Name, body: BackfillBody, request: Request, response: Response, caller: auth.Operator) -> dict:
    """One run of the graph's newest sealed version per fire time in [from, to), oldest first,
    at most `max_active` running (the rest queued, started by the server's scheduler as earlier
    ones end). Sent again, it makes no run twice; `dry_run` writes nothing."""
    result = service.backfill(request.app.state.db, name, body.start, body.end, schedule=body.schedule,
                              cron=body.cron, timezone=body.timezone, parameters=body.parameters,
                              max_active=body.max_active, dry_run=body.dry_run)
    response.status_code = 200 if body.dry_run else 201
    return result.to_dict()
