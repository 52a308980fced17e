"""Figures in Prometheus' text format. A server's ``/metrics``: what the database says now (runs
and the running runs' tracks by state, pools' size and use, live workers and their heartbeat's
age), read at each scrape, and the server's requests (counts and latencies by route and
status). A worker's own (``worker --metrics-port``): attempts started and ended by outcome, the
latency of its claim transaction (record, release, claim), database faults it retried."""
from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest,
                               start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pipeline_engine import service
from pipeline_engine.states import PipelineState, TrackState


class _Figures:
    """A collector that reads the database at each scrape (one read-only transaction)."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        figures = service.figures(self.db)
        runs = GaugeMetricFamily("pipeline_engine_runs", "Runs by state", labels=["state"])
        for state in PipelineState:
            runs.add_metric([state.value], figures.runs.get(state.value, 0))
        tracks = GaugeMetricFamily("pipeline_engine_tracks", "Tracks of the running runs, by state", labels=["state"])
        for state in TrackState:
            tracks.add_metric([state.value], figures.tracks.get(state.value, 0))
        size = GaugeMetricFamily("pipeline_engine_pool_size", "Tracks of the pool that may run at once",
                                 labels=["pool"])
        running = GaugeMetricFamily("pipeline_engine_pool_running", "Tracks of the pool running", labels=["pool"])
        pending = GaugeMetricFamily("pipeline_engine_pool_pending", "Tracks of the pool waiting for a slot",
                                    labels=["pool"])
        for p in figures.pools:
            size.add_metric([p.name], p.size)
            running.add_metric([p.name], p.running)
            pending.add_metric([p.name], p.pending)
        live = GaugeMetricFamily("pipeline_engine_workers", "Live workers")
        live.add_metric([], len(figures.workers))
        age = GaugeMetricFamily("pipeline_engine_worker_heartbeat_age_seconds", "Seconds since a live worker's"
                                " last heartbeat", labels=["worker"])
        held = GaugeMetricFamily("pipeline_engine_worker_tracks", "Tracks a live worker runs", labels=["worker"])
        for w in figures.workers:
            age.add_metric([w.name], max(0.0, (figures.at - w.heartbeat_at).total_seconds()))
            held.add_metric([w.name], w.tracks)
        yield from (runs, tracks, size, running, pending, live, age, held)


class Metrics:
    """The server's registry: the database's figures and the requests it answered."""

    def __init__(self, db):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Figures(db))
        self.requests = Counter("pipeline_engine_http_requests", "Requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("pipeline_engine_http_request_duration_seconds", "Time to answer a request",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def text(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Faults:
    def __init__(self, worker):
        self.worker = worker

    def collect(self):
        faults = CounterMetricFamily("pipeline_engine_worker_database_faults", "Database faults the worker's"
                                     " transactions waited out and retried")
        faults.add_metric([], self.worker.tx.retried)
        yield faults


def serve_worker_metrics(worker, host: str, port: int) -> CollectorRegistry:
    """Expose ``worker``'s own figures on ``host``:``port`` (a thread of its own); returns the
    registry."""
    registry = CollectorRegistry(auto_describe=False)
    started = Counter("pipeline_engine_attempts_started", "Attempts started", registry=registry)
    ended = Counter("pipeline_engine_attempts_ended", "Attempts ended, by outcome", ["outcome"], registry=registry)
    batch = Histogram("pipeline_engine_claim_transaction_seconds", "Time of the worker's transaction that"
                      " records ends, releases successors and claims", registry=registry,
                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
    registry.register(_Faults(worker))
    for outcome in ("succeeded", "failed", "cancelled", "pending"):
        ended.labels(outcome)

    def count(event) -> None:
        if event.kind == "started":
            started.inc()
        elif event.kind == "ended":
            ended.labels(event.state).inc()

    worker.events.subscribe(count)
    worker.on_batch = batch.observe
    start_http_server(port, addr=host, registry=registry)
    return registry
