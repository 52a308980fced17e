"""Self-fencing: a worker cut off from its database (a network partition: its connections stay
open, no byte passes) kills the processes it runs before its lease runs out, so that another
worker taking its track back never runs an attempt beside it; once the partition heals it records
nothing for the killed attempt and goes on serving. The partition is a TCP proxy on loopback,
written here, between the worker and a real MariaDB or PostgreSQL server. The other side: a
worker whose transaction keeps failing on a database that still answers renews its lease between
the retries and kills nothing. SQLite has no network to cut: these tests do not run on it.
"""
from __future__ import annotations

import select
import socket
import threading
import time

import pytest
from conftest import finished, run_tracks, stop, wait_for, worker
from sqlalchemy.engine import make_url
from test_durability import _has_marker, assert_no_overlap, attempts_in, processes_of

from pipeline_engine import executor, service
from pipeline_engine.db import Database

LEASE = 3.0


class FreezableProxy:
    """A TCP proxy from a port on loopback to a database server. ``freeze()`` stops forwarding
    bytes both ways, and accepting connections, while every connection stays open (a partition,
    not a reset); ``thaw()`` forwards again what was held back. ``close()`` ends it all."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def freeze(self) -> None:
        self.forwarding.clear()

    def thaw(self) -> None:
        self.forwarding.set()

    def _accept(self) -> None:
        while not self.closed.is_set():
            if not self.forwarding.wait(0.05):
                continue  # partitioned: a new connection waits in the backlog
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.socks += [client, upstream]
                thread = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
                self.threads.append(thread)
            thread.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Both directions of one connection; while frozen, bytes stay in the kernel's buffers."""
        other = {a: b, b: a}
        try:
            while not self.closed.is_set():
                if not self.forwarding.wait(0.05):
                    continue
                readable, _, _ = select.select([a, b], [], [], 0.05)
                if not self.forwarding.is_set():
                    continue
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    other[sock].sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self.closed.set()
        self.forwarding.set()
        self.listener.close()
        with self.lock:
            socks, threads = list(self.socks), list(self.threads)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)


def long_first_attempt(path) -> str:
    """A script that marks its progress in ``path`` every 50 ms (``<marker> <time>``), then that it
    is done: for 20 s or more on its first attempt, half a second on any later one."""
    return ('n=10; case "$PIPELINE_ENGINE_TRACK" in *:1) n=400;; esac; for i in $(seq $n); do'
            f' echo "$PIPELINE_ENGINE_TRACK $EPOCHREALTIME" >> {path}; sleep 0.05; done;'
            f' echo "$PIPELINE_ENGINE_TRACK done $EPOCHREALTIME" >> {path}')


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_worker_cut_off_from_the_database_kills_its_attempt_before_another_worker_takes_it_over(
        backend, db, db_url, tmp_path):
    side, after = tmp_path / "side", tmp_path / "after"
    service.import_graph(db, {"name": "fenced", "vertices": [
        {"name": "v", "script": long_first_attempt(side), "retries": 1}]}, seal=True)
    service.import_graph(db, {"name": "after", "vertices": [
        {"name": "w", "script": f'echo "$PIPELINE_ENGINE_TRACK" > {after}'}]}, seal=True)
    run = service.start_run(db, "fenced", detach=True)
    track_id = run_tracks(db, run.id)["v"].id
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    proxy = FreezableProxy(make_url(db_url).port)
    a = b = None
    try:
        url_a = make_url(db_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        probe = Database(url_a)
        key_a = probe.key  # A's markers name the database by the URL it was given
        probe.dispose()
        first, second = executor.marker(key_a, track_id, 1), executor.marker(db.key, track_id, 2)
        # A registers under another host name: B's take-back cannot kill A's processes itself
        a = worker(url_a, open(log_a, "w"), "--concurrency", "1", "--lease", f"{LEASE:g}", "--poll", "0.05",
                   host="elsewhere")
        wait_for(lambda: first in attempts_in(side), 30, "worker A's attempt to start")

        def a_runs() -> bool:
            return any(_has_marker(p, first) for p in processes_of(key_a))

        # Given A cut off from the database: its connections open, no byte passing
        proxy.freeze()
        frozen_at = time.monotonic()
        # When B, connected directly, takes the track back once A's lease has run out
        b = worker(db_url, open(log_b, "w"), "--concurrency", "1", "--lease", f"{LEASE:g}", "--poll", "0.05")
        wait_for(lambda: not a_runs() or second in attempts_in(side), 30, "A's attempt to end or B's to start")
        gone_at = time.time()
        # Then A's process is gone before B's attempt starts
        assert not a_runs(), f"B's attempt started while A's still ran: {attempts_in(side)}"
        assert wait_for(lambda: finished(db, run.id), 30, "B to finish the run") == "succeeded"
        seen = attempts_in(side)
        assert gone_at < seen[second]["first"] and seen[second]["done"] and not seen[first]["done"]
        assert_no_overlap(side)  # the times the attempts wrote never overlap
        time.sleep(max(0.0, frozen_at + LEASE + 1 - time.monotonic()))  # a partition longer than the lease
        # When the partition heals
        proxy.thaw()
        # Then A learns that the track was taken back, records nothing for it, and goes on serving
        wait_for(lambda: "not recorded" in log_a.read_text(), 30, "A to find its track taken back")
        track = run_tracks(db, run.id)["v"]
        assert (track.state, track.attempt, track.exit_code, track.worker) == ("succeeded", 2, 0, None)
        stop(b)
        later = service.start_run(db, "after", detach=True)
        assert wait_for(lambda: finished(db, later.id), 30, "A to run a new run") == "succeeded"
        assert after.read_text().startswith(f"{key_a}:")  # run by A, through the healed connection
        assert run_tracks(db, run.id)["v"].attempt == 2
    finally:
        proxy.thaw()  # a worker stuck on a frozen connection could not stop
        try:
            stop(*[p for p in (a, b) if p is not None])
        finally:
            proxy.close()
    out = log_a.read_text()
    assert "no heartbeat renewed" in out and "Traceback" not in out
    assert not processes_of(key_a) and not processes_of(db.key)


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_worker_cut_off_shorter_than_its_lease_still_kills_its_attempt_then_runs_it_again(
        backend, db, db_url, tmp_path):
    """A partition longer than ``lease - margin`` but shorter than the lease: nobody took the track,
    yet the worker could not know that it would not be taken. It killed its attempt, records
    nothing for it, and hands it back (the attempt not counted): it runs again, here on the same
    worker, and succeeds as attempt 1."""
    side, again = tmp_path / "side", tmp_path / "again"
    script = (f'if [ -e {again} ]; then n=5; else touch {again}; n=400; fi; for i in $(seq $n); do'
              f' echo "$PIPELINE_ENGINE_TRACK $EPOCHREALTIME" >> {side}; sleep 0.05; done;'
              f' echo "$PIPELINE_ENGINE_TRACK done $EPOCHREALTIME" >> {side}')
    service.import_graph(db, {"name": "short", "vertices": [{"name": "v", "script": script}]}, seal=True)
    run = service.start_run(db, "short", detach=True)
    log_a = tmp_path / "a.log"
    proxy = FreezableProxy(make_url(db_url).port)
    a = None
    try:
        url_a = make_url(db_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        a = worker(url_a, open(log_a, "w"), "--concurrency", "1", "--lease", f"{LEASE:g}", "--poll", "0.05")
        wait_for(lambda: side.exists(), 30, "the attempt to start")
        # Given a partition that outlasts the fencing deadline (2 s) but not the lease (3 s)
        proxy.freeze()
        wait_for(lambda: "no heartbeat renewed" in log_a.read_text(), 10, "the worker to fence itself")
        # When it heals
        proxy.thaw()
        # Then the killed attempt is not recorded: the track runs again, its attempt not counted
        assert wait_for(lambda: finished(db, run.id), 30, "the run to finish") == "succeeded"
    finally:
        proxy.thaw()
        try:
            stop(*[p for p in (a,) if p is not None])
        finally:
            proxy.close()
    track = run_tracks(db, run.id)["v"]
    assert (track.state, track.attempt, track.exit_code) == ("succeeded", 1, 0)
    lines = side.read_text().splitlines()
    assert sum(" done " in line for line in lines) == 1 and len(lines) < 400  # the long run was cut short
    assert "its heartbeat is renewed" in log_a.read_text()


def test_the_fencing_margin_leaves_at_least_two_heartbeats_and_a_second_before_the_lease(tmp_path):
    from pipeline_engine.errors import SettingError
    from pipeline_engine.runner import Engine, default_fence_margin

    assert {lease: default_fence_margin(lease) for lease in (30.0, 8.0, 3.0, 1.5)} == {
        30.0: 7.5, 8.0: 2.0, 3.0: 1.0, 1.5: 0.5}
    db = Database(f"sqlite:///{tmp_path / 'pe.db'}")
    for lease in (0.5, 1.0, 1.5, 3.0, 10.0, 30.0, 120.0):
        engine = Engine(db, lease=lease)
        assert engine.fence_after >= 2 * engine.heartbeat_every and engine.fence_margin > 0
        assert engine.fence_margin >= min(1.0, lease / 3)
    assert Engine(db, lease=30, fence_margin=2).fence_after == 28
    for wrong in (0, 30, 31, -1):
        with pytest.raises(SettingError):
            Engine(db, lease=30, fence_margin=wrong)
    db.dispose()


_REFUSE = {  # a fault of the server's own making: every change of a track's state fails as a deadlock would
    "postgresql": ["CREATE FUNCTION pe_refuse() RETURNS trigger AS $$ BEGIN"
                   " IF NEW.state IS DISTINCT FROM OLD.state THEN"
                   " RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001'; END IF;"
                   " RETURN NEW; END $$ LANGUAGE plpgsql",
                   "CREATE TRIGGER pe_refuse BEFORE UPDATE ON track FOR EACH ROW EXECUTE FUNCTION pe_refuse()"],
    "mariadb": ["CREATE TRIGGER pe_refuse BEFORE UPDATE ON track FOR EACH ROW BEGIN"
                " IF NOT (NEW.state <=> OLD.state) THEN"
                " SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'injected deadlock'; END IF; END"],
}
_ALLOW = {"postgresql": ["DROP TRIGGER pe_refuse ON track", "DROP FUNCTION pe_refuse()"],
          "mariadb": ["DROP TRIGGER pe_refuse"]}


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_worker_whose_transaction_keeps_failing_renews_its_lease_meanwhile_and_kills_nothing(
        backend, db, db_url, tmp_path):
    """The other side of fencing: a database that answers heartbeats while the dispatcher's batch
    keeps failing (here every change of a track's state, refused by a trigger as a deadlock would
    be, for longer than the lease) must not fence the worker: it renews its lease between the
    batch's retries, and its running attempt goes on to its end."""
    from sqlalchemy import text

    side = tmp_path / "long"
    ticks = ('for i in $(seq 140); do echo "$PIPELINE_ENGINE_TRACK $EPOCHREALTIME" >> {0}; sleep 0.05; done;'
             ' echo "$PIPELINE_ENGINE_TRACK done $EPOCHREALTIME" >> {0}').format(side)
    service.import_graph(db, {"name": "refused", "vertices": [{"name": "long", "script": ticks},
                                                              {"name": "short", "script": "sleep 0.3"}]}, seal=True)
    run = service.start_run(db, "refused", detach=True)
    log = tmp_path / "w.log"
    w = worker(db_url, open(log, "w"), "--concurrency", "2", "--lease", f"{LEASE:g}", "--poll", "0.05")
    refusing = False
    try:
        try:
            wait_for(lambda: {t.state for t in run_tracks(db, run.id).values()} == {"running"}, 30, "both to start")
            # Given every write of a track's end refused, for longer than the lease
            with db.engine.begin() as conn:
                for statement in _REFUSE[backend]:
                    conn.execute(text(statement))
            refusing = True
            wait_for(lambda: "retrying" in log.read_text(), 10, "the worker to retry the short track's end")
            time.sleep(LEASE + 2)
            # Then the worker renewed its lease meanwhile: it killed nothing, nobody may take its tracks
            assert "no heartbeat renewed" not in log.read_text()
            assert any(_has_marker(p, executor.marker(db.key, run_tracks(db, run.id)["long"].id, 1))
                       for p in processes_of(db.key))
            assert {t.state for t in run_tracks(db, run.id).values()} == {"running"}
        finally:
            if refusing:
                with db.engine.begin() as conn:
                    for statement in _ALLOW[backend]:
                        conn.execute(text(statement))
        # When the writes are allowed again, the run ends with each attempt recorded once
        assert wait_for(lambda: finished(db, run.id), 30, "the run to finish") == "succeeded"
    finally:
        stop(w)
    assert {(t.state, t.attempt) for t in run_tracks(db, run.id).values()} == {("succeeded", 1)}
    seen = attempts_in(side)
    assert len(seen) == 1 and all(a["done"] for a in seen.values())
