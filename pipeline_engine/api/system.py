"""Health, workers and pools."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field

from pipeline_engine import __version__, service
from pipeline_engine.api import auth
from pipeline_engine.api.errors import ERROR_SCHEMA
from pipeline_engine.errors import DatabaseError
from pipeline_engine.spec import GRAPH_NAME, MAX_POOL_SIZE

router = APIRouter()

#: a graph's, pool's, token's or run's name (``spec.GRAPH_NAME``), for the OpenAPI document
NAME_PATTERN = f"^{GRAPH_NAME.pattern}$"

def _whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: a whole number in a body: JSON's 3 or 3.0 (both integers to JSON Schema), never true or "3"
Whole = Annotated[int, BeforeValidator(_whole)]
#: a graph's version in a body
Version = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_whole)]

#: what any call that needs a token may answer besides its success
ERRORS = {code: {"description": what, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
          for code, what in ((401, "no valid token"), (403, "the token's role does not allow it"),
                             (422, "the request is not valid"), (503, "the database does not answer"))}


def errors(*codes: int) -> dict:
    """The error responses of a call: the common ones and ``codes``."""
    extra = {404: "not found", 409: "not in the state it needs", 413: "the body is too large"}
    return {**ERRORS, **{c: {"description": extra[c], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
                         for c in codes}}


@router.get("/health", tags=["system"], responses={503: {"description": "the database does not answer"}})
def health(request: Request) -> JSONResponse:
    """The server answers; says whether its database does (no token needed)."""
    try:
        service.ping(request.app.state.db)
    except DatabaseError as exc:
        return JSONResponse({"status": "unavailable", "database": exc.message.splitlines()[0],
                             "version": __version__}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "version": __version__})


@router.get("/workers", tags=["system"], responses=errors())
def workers(request: Request, caller: auth.Viewer) -> list[dict]:
    """The live workers: name, host, pid, concurrency, lease, heartbeat, tracks held."""
    return [w.to_dict() for w in service.list_workers(request.app.state.db)]


@router.get("/pools", tags=["pools"], responses=errors())
def pools(request: Request, caller: auth.Viewer) -> list[dict]:
    """Every pool: its size and its tracks running and pending (counted in SQL)."""
    return [p.to_dict() for p in service.list_pools(request.app.state.db)]


class PoolBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    size: Whole = Field(ge=0, le=MAX_POOL_SIZE, description="tracks naming the pool that may run at once; 0 holds them")
    description: str | None = Field(default=None, max_length=10000)


@router.put("/pools/{name}", tags=["pools"], responses=errors())
def set_pool(name: Annotated[str, Path(max_length=200, pattern=NAME_PATTERN)], body: PoolBody, request: Request, caller: auth.Editor) -> dict:
    """Create a pool or change its size (and description)."""
    return service.set_pool(request.app.state.db, name, body.size, description=body.description).to_dict()


@router.delete("/pools/{name}", tags=["pools"], status_code=204, responses=errors(404, 409))
async def delete_pool(name: str, request: Request, caller: auth.Editor) -> Response:
    """Delete a pool that no vertex names."""
    await run_in_threadpool(service.delete_pool, request.app.state.db, name)
    return Response(status_code=204)
