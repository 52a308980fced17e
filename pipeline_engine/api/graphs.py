"""Graphs: read, import, check, seal, copy, delete."""
from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from pipeline_engine import graphfile, logfiles, service
from pipeline_engine.api import auth
from pipeline_engine.api.system import NAME_PATTERN, Version, errors
from pipeline_engine.errors import GraphFileError
from pipeline_engine.spec import VERTEX_NAME

router = APIRouter(tags=["graphs"])

#: what a graph file body may be sent as
_FORMATS = {"application/json": "json", "application/yaml": "yaml", "application/x-yaml": "yaml",
            "text/yaml": "yaml", "text/x-yaml": "yaml"}

_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN}


def _optional(**properties) -> dict:
    """Keys a graph file may leave out or give as null (YAML's empty value)."""
    return {key: {"anyOf": [schema, {"type": "null"}]} for key, schema in properties.items()}


_VERTEX = {"type": "object", "required": ["name", "script"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": f"^{VERTEX_NAME.pattern}$"},
    "script": {"type": "string", "minLength": 1},
    **_optional(description={"type": "string"}, inputs={"type": "object"},
                timeout={"type": "number", "exclusiveMinimum": 0}, retries={"type": "integer", "minimum": 0},
                priority={"type": "number"}, pool=_NAME, retry_delay={"type": "number", "minimum": 0},
                retry_backoff={"type": "number", "minimum": 1}, cwd={"type": "string"},
                env={"type": "object", "additionalProperties": {"type": "string"}})}}
_SCHEDULE = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": _NAME,
    **_optional(cron={"type": "string"}, every={"type": "string"}, timezone={"type": "string"},
                parameters={"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                catchup={"type": "string", "enum": ["none", "latest", "all"]},
                max_catchup={"type": "integer", "minimum": 1, "maximum": 1000},
                overlap={"type": "string", "enum": ["allow", "skip", "queue", "cancel"]},
                start={"type": "string"}, end={"type": "string"})}}
#: the shape of a graph file; what it cannot say (how the shell reader places a script's
#: placeholders, the inputs' types) the server checks, answering 422 with the problems
_GRAPH_FILE = {
    "required": True,
    "description": "a graph file, as `graph import` reads it (JSON or YAML)",
    "content": {
        "application/json": {"schema": {"type": "object", "required": ["name", "vertices"],
                                        "additionalProperties": False, "properties": {
            "name": _NAME, "vertices": {"type": "array", "minItems": 1, "items": _VERTEX},
            **_optional(description={"type": "string"},
                        edges={"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                                          "items": {"type": "string"}}},
                        pools={"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                        schedules={"type": "array", "items": _SCHEDULE})}}},
        "application/yaml": {"schema": {}},
    },
}


@router.get("/graphs", responses=errors())
def list_graphs(request: Request, caller: auth.Viewer) -> list[dict]:
    """Every graph name's newest version, as `graph list --json`."""
    return [g.to_dict() for g in service.list_graphs(request.app.state.db)]


@router.get("/graphs/{name}", responses=errors(404))
def show_graph(name: str, request: Request, caller: auth.Viewer, version: int | None = Query(None, ge=1, le=2**31 - 1)) -> dict:
    """A graph's definition and status (the newest version unless `version`), as `graph show --json`."""
    return service.show_graph(request.app.state.db, name, version=version).to_dict()


@router.get("/graphs/{name}/export", responses={**errors(404), 200: {"content": {
    "application/yaml": {"schema": {}}, "application/json": {"schema": {"type": "object"}}}}})
def export_graph(name: str, request: Request, caller: auth.Viewer,
                 format: str = Query("yaml", pattern="^(yaml|json)$"),
                 version: int | None = Query(None, ge=1, le=2**31 - 1)) -> Response:
    """The graph file of a version, as `graph export`: importing it gives the same graph back."""
    text = service.export_graph(request.app.state.db, name, format, version=version)
    return Response(text, media_type="application/json" if format == "json" else "application/yaml")


@router.post("/graphs", status_code=201, openapi_extra={"requestBody": _GRAPH_FILE}, responses=errors(409, 413))
async def import_graph(request: Request, caller: auth.Editor, response: Response, check: bool = False, seal: bool = False,
                       apply_pools: bool = False) -> dict:
    """Import a graph file as a draft (a new name, or the next version of a sealed one), as
    `graph import`; with `check` and `seal`, those steps too, in one transaction."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = _FORMATS.get(kind)
    if fmt is None:
        raise GraphFileError(f"a graph file is sent as {' or '.join(sorted(set(_FORMATS)))}, not"
                             f" {kind or 'no content type'}")
    data = await request.body()
    spec = graphfile.load_bytes(data, "the request's graph file", fmt)
    info = await run_in_threadpool(service.import_graph, request.app.state.db, spec, check=check, seal=seal,
                                   apply_pools=apply_pools)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/api/v1/graphs/{info.name}"
    return {**info.to_dict(), "notes": list(info.notes), "warnings": list(info.warnings),
            "unchanged": info.unchanged}


@router.post("/graphs/{name}/check", responses=errors(404))
def check_graph(name: str, request: Request, caller: auth.Editor) -> dict:
    """Check the newest version for cycles; an acyclic draft becomes checked. A cycle: 422
    naming its vertices."""
    return service.check_graph(request.app.state.db, name).to_dict()


@router.post("/graphs/{name}/seal", responses=errors(404, 409))
def seal_graph(name: str, request: Request, caller: auth.Editor) -> dict:
    """Seal the newest version, which must be checked: it never changes again, and it can run."""
    info = service.seal_graph(request.app.state.db, name)
    return {**info.to_dict(), "warnings": list(info.warnings)}


class CopyBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    name: str = Field(max_length=200, pattern=NAME_PATTERN, description="the new graph's name")
    version: Version | None = Field(default=None, description="the version to copy (default newest)")


@router.post("/graphs/{name}/copy", status_code=201, responses=errors(404, 409))
def copy_graph(name: str, body: CopyBody, request: Request, caller: auth.Editor, response: Response) -> dict:
    """Copy a version into a new graph, as its first version (a draft)."""
    info = service.copy_graph(request.app.state.db, name, body.name, version=body.version)
    response.headers["Location"] = f"/api/v1/graphs/{info.name}"
    return info.to_dict()


@router.delete("/graphs/{name}", status_code=204, responses=errors(404, 409))
def delete_graph(name: str, request: Request, caller: auth.Editor, with_runs: bool = False,
                 version: int | None = Query(None, ge=1, le=2**31 - 1)) -> Response:
    """Delete a graph (every version, or `version`); with `with_runs`, its finished runs too
    (a graph with runs is refused without it)."""
    db = request.app.state.db
    deleted = service.delete_graph(db, name, version=version, with_runs=with_runs)
    if request.app.state.logs:
        logfiles.remove_runs(request.app.state.logs, db.key, deleted.runs)
    return Response(status_code=204)
