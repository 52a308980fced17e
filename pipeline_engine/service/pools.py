"""Concurrency pools: how many tracks naming a pool run at once, across every worker."""
from __future__ import annotations

from pipeline_engine import store
from pipeline_engine.db import Database
from pipeline_engine.errors import GraphError, NotFoundError, PoolInUseError
from pipeline_engine.service._base import _audit, _text, _write
from pipeline_engine.spec import check_pool
from pipeline_engine.views import PoolInfo


def _pool_info(pool, usage: dict[str, int]) -> PoolInfo:
    return PoolInfo(pool.name, pool.size, pool.description, usage.get("running", 0), usage.get("pending", 0),
                    pool.updated_at)


def set_pool(db: Database, name: str, size: int, *, description: str | None = None) -> PoolInfo:
    """Create a pool, or change its size: at most ``size`` tracks of vertices that name it run
    at once, across every worker and run. A smaller size lets running tracks finish and starts
    no more until they fit; a larger one is used at the next claim; 0 holds its tracks pending."""
    check_pool(name, size)
    if description is not None and not isinstance(description, str):
        raise GraphError(f"pool '{name}': description must be a string")
    if description is not None:
        _text(f"pool '{name}'", "description", description)
    with _write(db) as s:
        pool, before = store.set_pool(s, name, size, description)
        _audit(s, "pool.set", name, f"size {size}" if before is None or before == size else f"size {before} -> {size}")
        return _pool_info(pool, store.pool_usage(s).get(name, {}))


def list_pools(db: Database) -> list[PoolInfo]:
    with db.transaction(write=False) as s:
        usage = store.pool_usage(s)
        return [_pool_info(p, usage.get(p.name, {})) for p in store.list_pools(s)]


def delete_pool(db: Database, name: str) -> None:
    """Delete a pool that no vertex names (a run of a graph that names it could not start)."""
    with _write(db) as s:
        pool = store.find_pools(s, [name], lock=True).get(name)
        if pool is None:
            raise NotFoundError(f"pool '{name}' not found")
        users = store.pool_users(s, name)
        if users:
            raise PoolInUseError(f"pool '{name}' is named by vertices of graph {', '.join(repr(g) for g in users)}:"
                             " a graph that names it could not run without it (set its size to 0 to hold"
                             " its tracks instead)")
        store.delete_pool(s, pool)
        _audit(s, "pool.delete", name)
