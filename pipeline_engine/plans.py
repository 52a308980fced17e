"""What a worker knows of the runs it serves, in memory: each run's plan (its tracks' scripts,
successors and settings) and the queues of its pending tracks — ready (best first), aside
(their pool was full) and later (a retry that waits). No database here: the worker reads the
rows (``store.plan_rows``) and the database stays the truth; this is what the worker needs to
claim and run quickly, and it lasts exactly as long as the runs it describes."""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import simplejson

from pipeline_engine import dag, inputtypes, rendering
from pipeline_engine.executors.base import Attempt
from pipeline_engine.logfiles import log_path
from pipeline_engine.states import TrackState as T
from pipeline_engine.views import RunStart


@dataclass
class Job:
    """One track of a plan: how to run it and what it releases."""
    track_id: int
    pipeline_id: int
    vertex: str
    timeout: float | None
    max_attempts: int
    successors: list[int]
    #: for a run whose scripts are not in memory: the vertex's script, its input schema and the
    #: track's stored values (JSON text), rendered only when the track runs
    source: tuple[str, str, str] | None = None
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    #: the vertex's working directory and variables (``VertexSpec.cwd``, ``VertexSpec.env``)
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    """What a worker needs to run the tracks of one pipeline: scripts and successors."""
    pipeline_id: int
    rendered: dict[str, rendering.Rendered]
    secrets: list[str]
    jobs: dict[int, Job]
    succs: dict[int, list[int]]
    #: the run is this worker's own (``run``, ``resume``, ``retry``): it finishes it itself
    owned: bool
    #: the graph's name, and the fire time of a scheduled run (for the attempts' environment)
    graph: str = ""
    fire_at: datetime | None = None


def context(plan: Plan, vertex: str, attempt: int) -> dict[str, str]:
    """What an attempt's processes learn of it from their environment (over the vertex's own
    ``env``): the run's id, graph, vertex, attempt number, and a scheduled run's fire time
    (ISO 8601, UTC; empty for a run that was not scheduled)."""
    return {"PIPELINE_ENGINE_RUN_ID": str(plan.pipeline_id), "PIPELINE_ENGINE_GRAPH": plan.graph,
            "PIPELINE_ENGINE_VERTEX": vertex, "PIPELINE_ENGINE_ATTEMPT": str(attempt),
            "PIPELINE_ENGINE_FIRE_AT": plan.fire_at.isoformat().replace("+00:00", "Z") if plan.fire_at else ""}


def _render(job: Job) -> rendering.Rendered:
    """A track's script with its stored input values (a run without secrets)."""
    assert job.source is not None
    script, schema_json, values_json = job.source
    schema = inputtypes.parse_schema(job.vertex, simplejson.loads(schema_json) if schema_json else {})
    values = simplejson.loads(values_json) if values_json else {}
    return rendering.render_script(job.vertex, script, schema, values)


class Plans:
    """The runs a worker serves, and its queues of their pending tracks."""

    def __init__(self) -> None:
        self.plans: dict[int, Plan] = {}
        self.jobs: dict[int, Job] = {}
        #: track id -> its attempts so far (the number of the attempt it runs or ran last)
        self.attempts: dict[int, int] = {}
        self.priority: dict[int, float] = {}
        self.pool_of: dict[int, str] = {}  # track id -> its pool, for tracks of vertices in one
        # pending tracks this worker knows of, highest priority first: (-priority, track id)
        self.ready: list[tuple[float, int]] = []
        self._queued: set[int] = set()
        # tracks of pools found full, aside from ``ready`` until a slot may be free: pool -> heap
        self.blocked: dict[str, list[tuple[float, int]]] = {}
        # retries that wait (they hold no thread and no slot meanwhile): (due, track id), and
        # track id -> due
        self.delayed: list[tuple[datetime, int]] = []
        self._due_at: dict[int, datetime] = {}
        self.unrunnable: set[int] = set()  # runs this worker failed to load

    def __contains__(self, pipeline_id: int) -> bool:
        return pipeline_id in self.plans

    def runs(self) -> set[int]:
        return set(self.plans)

    def sizes(self) -> dict[str, int]:
        """How much each collection holds (all 0 once the runs are gone)."""
        return {"plans": len(self.plans), "jobs": len(self.jobs), "attempts": len(self.attempts),
                "priority": len(self.priority), "pool_of": len(self.pool_of), "ready": len(self.ready),
                "queued": len(self._queued), "blocked": sum(map(len, self.blocked.values())),
                "due_at": len(self._due_at)}

    def rank(self, track_id: int) -> float:
        return self.priority.get(track_id, 0.0)

    # --- plans ----------------------------------------------------------------------------------

    def add(self, pipeline_id: int, rows: Sequence, edges: Sequence[tuple[str, str]], *,
            run: RunStart | None = None, owned: bool = False, stamp: datetime | None = None, graph: str = "",
            fire_at: datetime | None = None) -> Plan:
        """The plan of a pipeline from its track rows (``store.plan_rows``) and its graph's edges.
        Without ``run`` (a run nobody owns: no secrets) scripts are rendered when they run. An
        owned run's pending tracks join the queues (``stamp``: now, for retries that wait)."""
        by_name = {r.vertex: r.id for r in rows}
        succs = {by_name[v]: [by_name[h] for h in heads]
                 for v, heads in dag.adjacency(list(by_name), edges).items()}
        jobs = {r.id: Job(r.id, pipeline_id, r.vertex, r.timeout, r.max_attempts, succs[r.id],
                          None if run is not None else (r.script, r.schema, r.values),
                          r.retry_delay or 0.0, r.retry_backoff or 1.0, r.cwd, r.env or {}) for r in rows}
        plan = Plan(pipeline_id, run.rendered if run is not None else {}, run.secrets if run is not None else [],
                    jobs, succs, owned, graph, fire_at)
        self.plans[pipeline_id] = plan
        self.jobs.update(jobs)
        for r in rows:
            self.attempts[r.id] = r.attempt
            self.priority[r.id] = r.priority or 0.0
            if r.pool is not None:
                self.pool_of[r.id] = r.pool
        if owned:
            for r in rows:
                if r.state == T.PENDING and r.not_before is not None and stamp is not None and r.not_before > stamp:
                    self.later(r.id, r.not_before)
            self.push([r.id for r in rows if r.state == T.PENDING and r.id not in self._due_at])
        return plan

    def plan_of(self, track_id: int) -> Plan:
        return self.plans[self.jobs[track_id].pipeline_id]

    def attempt(self, track_id: int, attempt: int, log_dir: str | None) -> Attempt:
        """What an executor needs to run this attempt of a known track."""
        job = self.jobs[track_id]
        plan = self.plans[job.pipeline_id]
        rendered = plan.rendered.get(job.vertex)
        succ_rank = max((self.rank(t) for t in job.successors), default=None)
        return Attempt(track_id, attempt, job.pipeline_id, job.vertex, self.rank(track_id),
                       (lambda: rendered) if rendered is not None else (lambda: _render(job)),
                       timeout=job.timeout, cwd=job.cwd, env={**job.env, **context(plan, job.vertex, attempt)},
                       secrets=plan.secrets,
                       log_path=None if log_dir is None else log_path(log_dir, job.pipeline_id, job.vertex),
                       successors_rank=succ_rank)

    def forget(self, pipeline_id: int) -> None:
        plan = self.plans.pop(pipeline_id, None)
        if plan is not None:
            for track_id in plan.jobs:
                self.jobs.pop(track_id, None)
                self.attempts.pop(track_id, None)
                self.priority.pop(track_id, None)
                self.pool_of.pop(track_id, None)
                self._due_at.pop(track_id, None)

    def idle(self, in_flight: Iterable[int], keep: int | None = None) -> list[int]:
        """The runs none of whose tracks is in flight (but ``keep``)."""
        busy = {self.jobs[t].pipeline_id for t in in_flight if t in self.jobs}
        return [p for p in self.plans if p not in busy and p != keep]

    def forget_all(self, pipeline_ids: Iterable[int]) -> None:
        """Forget these runs, and every queued track of theirs."""
        pipeline_ids = list(pipeline_ids)
        if not pipeline_ids:
            return
        for pipeline_id in pipeline_ids:
            self.forget(pipeline_id)
        # the queues keep only the tracks still known
        self.ready = [item for item in self.ready if item[1] in self.jobs]
        heapq.heapify(self.ready)
        for heap in self.blocked.values():
            heap[:] = [item for item in heap if item[1] in self.jobs]
            heapq.heapify(heap)
        self._queued &= self.jobs.keys()

    # --- the queues -----------------------------------------------------------------------------

    def later(self, track_id: int, when: datetime) -> None:
        """A track waiting for its retry: ready again at ``when`` (the database refuses to let it
        be claimed before)."""
        self._due_at[track_id] = when
        heapq.heappush(self.delayed, (when, track_id))

    def wake_delayed(self, stamp: datetime) -> float | None:
        """Retries whose wait is over at ``stamp`` join the ready queue. Returns 0 if some did,
        else the seconds until the next one is due, or None when none waits."""
        woke = False
        while self.delayed:
            when, track_id = self.delayed[0]
            if self._due_at.get(track_id) != when:  # forgotten, or due at another time since
                heapq.heappop(self.delayed)
                continue
            if when > stamp:
                return 0.0 if woke else (when - stamp).total_seconds()
            heapq.heappop(self.delayed)
            del self._due_at[track_id]
            if track_id in self.jobs:
                self.push([track_id])
                woke = True
        return 0.0 if woke else None

    def push(self, track_ids: Iterable[int]) -> None:
        for track_id in track_ids:
            if track_id not in self._queued:
                self._queued.add(track_id)
                heapq.heappush(self.ready, (-self.rank(track_id), track_id))

    def pop(self, n: int, in_flight: dict[int, int]) -> list[int]:
        """Up to ``n`` known pending tracks, highest priority (critical path) first. Tracks of a
        pool found full are set aside (they stay known: ``unblock`` brings them back)."""
        out: list[int] = []
        while self.ready and len(out) < n:
            item = heapq.heappop(self.ready)
            track_id = item[1]
            pool = self.pool_of.get(track_id)
            if pool is not None and pool in self.blocked:
                heapq.heappush(self.blocked[pool], item)
                continue
            self._queued.discard(track_id)
            if track_id not in in_flight:
                out.append(track_id)
        return out

    def unblock(self, pools: Iterable[str]) -> None:
        """Tracks set aside for these pools are tried again."""
        for pool in list(pools):
            for item in self.blocked.pop(pool, []):
                heapq.heappush(self.ready, item)

    def block(self, track_ids: Iterable[int]) -> None:
        """Pending tracks whose pools were full at a claim: aside until a slot may be free."""
        for track_id in track_ids:
            heap = self.blocked.setdefault(self.pool_of[track_id], [])
            if track_id not in self._queued:
                self._queued.add(track_id)
                heapq.heappush(heap, (-self.rank(track_id), track_id))

    def best_aside(self) -> float | None:
        """The best rank among the tracks set aside for full pools."""
        return max((-heap[0][0] for heap in self.blocked.values() if heap), default=None)
