"""Run one pipeline in this process: a thread pool executes the ready tracks and every state
change is committed before anything depends on it. Each worker thread opens its own
transactions; no session is shared between threads."""
from __future__ import annotations

import os
import socket
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from pipeline_engine import dag, executor, store
from pipeline_engine.db import Database
from pipeline_engine.models import Track
from pipeline_engine.service import RunStart
from pipeline_engine.states import TrackState as T

#: threads per run when none is asked for
DEFAULT_WORKERS = 4


@dataclass
class _Job:
    track_id: int
    vertex: str
    timeout: float | None
    successors: list[int]


class Runner:
    def __init__(self, db: Database, run: RunStart, *, workers: int | None = None,
                 output_cap: int = executor.DEFAULT_OUTPUT_CAP):
        self.db, self.run = db, run
        self.workers = workers or DEFAULT_WORKERS
        self.output_cap = output_cap
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        with db.transaction(write=False) as s:
            rows = store.run_tracks(s, run.id)
            edges = store.edge_names(s, rows[0][1].graph_id) if rows else []
        by_name = {v.name: t.id for t, v in rows}
        succs = dag.adjacency(list(by_name), edges)
        # Successors by track id; descendants are walked only when a track fails for good.
        self.succs = {by_name[v]: [by_name[h] for h in heads] for v, heads in succs.items()}
        self.jobs = {t.id: _Job(t.id, v.name, v.timeout, self.succs[t.id]) for t, v in rows}
        self.initial = [t.id for t, _ in rows if t.state == T.PENDING]
        self.secrets = run.secrets

    def execute(self) -> str:
        """Run until nothing is left to run; returns the pipeline's final state."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"run{self.run.id}") as pool:
            running: dict[Future, int] = {}
            ready = list(self.initial)
            while ready or running:
                for track_id in ready:
                    running[pool.submit(self._attempt, track_id)] = track_id
                ready = []
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    ready.extend(future.result())
        return self._finish()

    def _attempt(self, track_id: int) -> list[int]:
        """Claim, run and record one attempt; returns the tracks that became pending."""
        job = self.jobs[track_id]
        with self.db.transaction() as s:
            if not store.move_track(s, track_id, [T.PENDING], T.RUNNING, attempt=Track.attempt + 1,
                                    started_at=store.now(), finished_at=None, worker=self.name,
                                    heartbeat_at=store.now(), exit_code=None, error=None):
                return []
        rendered = self.run.rendered[job.vertex]
        outcome = executor.run_script(rendered.script, rendered.env, timeout=job.timeout,
                                      secrets=self.secrets, output_cap=self.output_cap)
        result = {"exit_code": outcome.exit_code, "error": outcome.error, "stdout": outcome.stdout,
                  "stderr": outcome.stderr, "finished_at": store.now(), "worker": None}
        with self.db.transaction() as s:
            if outcome.ok:
                store.move_track(s, track_id, [T.RUNNING], T.SUCCEEDED, **result)
                return store.release_successors(s, self.run.id, job.successors)
            track = s.get(Track, track_id)
            if track.attempt < track.max_attempts:
                store.move_track(s, track_id, [T.RUNNING], T.PENDING, **result)
                return [track_id]
            store.move_track(s, track_id, [T.RUNNING], T.FAILED, **result)
            store.mark_upstream_failed(s, sorted(dag.descendants([track_id], self.succs)))
            return []

    def _finish(self) -> str:
        with self.db.transaction() as s:
            counts = store.state_counts(s, self.run.id)
            state = "succeeded" if set(counts) <= {T.SUCCEEDED.value} else "failed"
            store.finish_pipeline(s, self.run.id, state)
            return state


def run_pipeline(db: Database, run: RunStart, *, workers: int | None = None) -> str:
    """Execute a started run to its end in this process; returns its final state."""
    return Runner(db, run, workers=workers).execute()
