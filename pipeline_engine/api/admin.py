"""What only admins do: tokens, the audit log, recovery, pruning."""
from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from pipeline_engine import logfiles, service
from pipeline_engine.api import auth
from pipeline_engine.api.system import NAME_PATTERN, errors
from pipeline_engine.roles import NAMES

router = APIRouter(tags=["admin"])


@router.get("/audit", responses=errors())
def audit(request: Request, caller: auth.Admin, limit: int = Query(100, ge=1, le=10_000),
          offset: int = Query(0, ge=0, le=2**63 - 1)) -> list[dict]:
    """Who did what, newest first: every state-changing call of the API, the CLI and Python,
    with the token's name (or `cli:USER@HOST`), the action, its target and the time."""
    return [a.to_dict() for a in service.list_audit(request.app.state.db, limit=limit, offset=offset)]


@router.get("/tokens", responses=errors())
def list_tokens(request: Request, caller: auth.Admin) -> list[dict]:
    """The tokens, as `token list --json` (never a token itself)."""
    return [t.to_dict() for t in service.list_tokens(request.app.state.db)]


class TokenBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    name: str = Field(max_length=200, pattern=NAME_PATTERN)
    role: str = Field(json_schema_extra={"enum": list(NAMES)})


@router.post("/tokens", status_code=201, responses=errors(409))
def create_token(body: TokenBody, request: Request, caller: auth.Admin) -> dict:
    """Make a token: the answer holds it (`token`), shown this once; only its hash is kept."""
    info, token = service.create_token(request.app.state.db, body.name, body.role)
    return {**info.to_dict(), "token": token}


@router.delete("/tokens/{name}", status_code=204, responses=errors(404))
def revoke_token(name: str, request: Request, caller: auth.Admin) -> Response:
    """Revoke a token: requests that carry it are refused from now on."""
    service.revoke_token(request.app.state.db, name)
    return Response(status_code=204)


@router.post("/recover", responses=errors())
def recover(request: Request, caller: auth.Admin) -> dict:
    """Take back now the running tracks of workers whose lease ran out (as `recover`)."""
    from pipeline_engine.executors.local import kill_leftovers

    db = request.app.state.db
    # this server's host may be a worker's: what dead workers of it left is killed here
    return {"taken_back": service.recover(db, kill=partial(kill_leftovers, db.key))}


class PruneBody(BaseModel):
    model_config = {"extra": "forbid", "strict": True}

    older_than_days: float = Field(ge=0, le=1e6, description="delete runs that finished more than this many days ago")
    dry_run: bool = False


@router.post("/prune", responses=errors())
def prune(body: PruneBody, request: Request, caller: auth.Admin) -> dict:
    """Delete finished runs older than `older_than_days`, with their tracks and their log files
    on this machine (as `prune`)."""
    db, logs = request.app.state.db, request.app.state.logs
    runs, tracks = service.prune_runs(
        db, body.older_than_days, dry_run=body.dry_run,
        on_batch=(lambda ids: logfiles.remove_runs(logs, db.key, ids)) if logs else None)
    return {"runs": runs, "tracks": tracks, "dry_run": body.dry_run}
