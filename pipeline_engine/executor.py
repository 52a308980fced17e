"""Processes: run one vertex's script in its own process group, capture the tail of its
output, and kill the whole group on timeout. No database here.

Scripts run as ``bash --noprofile --norc -e -o pipefail -c SCRIPT``: a failing command (also
inside a pipeline) fails the vertex.
"""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pipeline_engine.params import MASK, mask

SHELL = ("/bin/bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c")
#: bytes of stdout and of stderr kept per track
DEFAULT_OUTPUT_CAP = 64 * 1024
#: seconds between SIGTERM and SIGKILL when a process group is stopped
DEFAULT_KILL_GRACE = 2.0
_CHUNK = 64 * 1024
_POLL = 0.1  # seconds between checks of a shell whose children hold its pipes


@dataclass(frozen=True)
class Outcome:
    #: the shell's exit status; negative N when signal N ended it; None if it never started
    exit_code: int | None
    timed_out: bool
    #: the tails of the output, decoded as UTF-8, secrets masked
    stdout: str
    stderr: str
    duration: float
    #: why it ended, when not by its own exit (timeout, could not start)
    error: str | None = None
    #: the file the full output went to, if any
    log_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class _Tail:
    """Keeps the last ``cap`` bytes of a stream (plus room to mask a secret cut at the edge)."""

    def __init__(self, cap: int, margin: int):
        self.cap, self.keep = cap, cap + margin
        self.buf = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > self.keep:
            cut = len(self.buf) - self.keep
            self.dropped += cut
            del self.buf[:cut]

    def text(self, secrets: Iterable[str]) -> str:
        text = mask(self.buf.decode("utf-8", errors="replace"), secrets)
        dropped = self.dropped
        if len(text.encode("utf-8")) > self.cap:
            encoded = text.encode("utf-8")
            dropped += len(encoded) - self.cap
            text = encoded[-self.cap:].decode("utf-8", errors="ignore")
        return f"[... {dropped} bytes truncated ...]\n{text}" if dropped else text


class _LogFile:
    """Streams the full output of an attempt to a file (stdout and stderr interleaved as they
    come), secrets masked even when one is split across two reads."""

    def __init__(self, path: str, header: str | None, secrets: list[str]):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path, "ab")
        if header:
            self.file.write(f"--- {header} ---\n".encode())
        found = sorted({x.encode("utf-8") for x in secrets}, key=len, reverse=True)
        self.pattern = re.compile(b"|".join(map(re.escape, found))) if found else None
        self.prefixes = {x[:k] for x in found for k in range(1, len(x))}
        self.held: dict[int, bytes] = {}

    def feed(self, fd: int, data: bytes) -> None:
        if self.pattern is None:
            self.file.write(data)
            return
        buf = self.pattern.sub(MASK.encode(), self.held.pop(fd, b"") + data)
        # Hold back a tail that could be the start of a secret finished by the next read.
        keep = next((k for k in range(min(len(buf), max(map(len, self.prefixes))), 0, -1)
                     if buf[-k:] in self.prefixes), 0)
        if keep:
            self.held[fd] = buf[-keep:]
            buf = buf[:-keep]
        self.file.write(buf)

    def close(self) -> None:
        for rest in self.held.values():
            self.file.write(rest)
        self.file.close()


def kill_group(pid: int, grace: float = DEFAULT_KILL_GRACE, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group ``pid`` leads, then SIGKILL what is left after ``grace``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is None:
            time.sleep(0.01)
            continue
        try:
            os.killpg(pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.01)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_script(script: str, env: Mapping[str, str] | None = None, *, timeout: float | None = None,
               secrets: Iterable[str] = (), output_cap: int = DEFAULT_OUTPUT_CAP,
               kill_grace: float = DEFAULT_KILL_GRACE, cwd: str | None = None,
               log_path: str | None = None, log_header: str | None = None,
               on_spawn: Callable[[int], None] | None = None) -> Outcome:
    """Run ``script`` to the end (or to ``timeout`` seconds) in a new process group.

    When the shell exits, whatever it left running in its group is killed too: a vertex is
    finished when its script is, and leaves no orphans. On timeout the whole group gets
    SIGTERM, then SIGKILL after ``kill_grace`` seconds. With ``log_path`` the full output is
    appended to that file too (after a ``--- log_header ---`` line), secrets masked.
    ``on_spawn`` is called with the process group's id once the shell runs (to kill it from
    another thread)."""
    secrets = [s for s in secrets if s]
    margin = max((len(s.encode("utf-8")) for s in secrets), default=0)
    # The inherited environment plus the script's values; bytes, as Popen would encode each
    # variable of a str mapping again on every spawn. No values: the environment as it is.
    full_env = {**os.environb, **{os.fsencode(k): os.fsencode(v) for k, v in env.items()}} if env else None
    started = time.monotonic()
    try:
        log = _LogFile(log_path, log_header, secrets) if log_path else None
    except OSError as exc:
        return Outcome(None, False, "", "", 0.0, error=f"cannot write the log file {log_path}: {exc}")
    try:
        proc = subprocess.Popen([*SHELL, script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env, cwd=cwd, start_new_session=True)
    except OSError as exc:
        if log is not None:
            log.close()
        return Outcome(None, False, "", "", time.monotonic() - started, error=f"could not start bash: {exc}")
    if on_spawn is not None:
        on_spawn(proc.pid)
    tails = {proc.stdout.fileno(): _Tail(output_cap, margin), proc.stderr.fileno(): _Tail(output_cap, margin)}
    deadline = None if timeout is None else started + timeout
    timed_out = False
    try:
        timed_out = _collect(proc, tails, deadline, kill_grace, log)
        proc.wait()
    finally:
        # Whatever the script left running in its group ends with it: no orphans.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
        proc.stderr.close()
        if log is not None:
            log.close()
    out, err = (tail.text(secrets) for tail in tails.values())
    error = f"timed out after {timeout:g} s; process group killed" if timed_out else None
    return Outcome(proc.returncode, timed_out, out, err, time.monotonic() - started, error=error,
                   log_path=os.path.abspath(log_path) if log_path else None)


def _collect(proc: subprocess.Popen, tails: dict[int, _Tail], deadline: float | None, grace: float,
             log: _LogFile | None) -> bool:
    """Read both pipes in this thread until EOF (no reader threads: starting them costs more
    than a short script). Returns whether the deadline passed and the group was killed."""
    timed_out = shell_done = False
    with selectors.PollSelector() as selector:  # no epoll descriptor to open per process
        for fd in tails:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            wait_s = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
            for key, _ in selector.select(wait_s):
                data = os.read(key.fd, _CHUNK)
                if data:
                    tails[key.fd].feed(data)
                    if log is not None:
                        log.feed(key.fd, data)
                else:
                    selector.unregister(key.fd)
            if not shell_done and proc.poll() is not None:
                # The shell is done; children it left behind would hold the pipes open.
                shell_done = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not timed_out and not shell_done and deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                kill_group(proc.pid, grace, proc)
    return timed_out


#: every process of a track's attempt carries this variable (``<database key>:<track>:<attempt>``),
#: so that leftovers of a dead worker can be found on its host and killed before the track runs again
MARKER = "PIPELINE_ENGINE_TRACK"


def marker(db_key: str, track_id: int, attempt: int) -> str:
    return f"{db_key}:{track_id}:{attempt}"


def kill_marked(markers: Iterable[str], wait: float = 5.0) -> int:
    """SIGKILL every process on this host whose environment carries one of ``markers`` (see
    MARKER), with its process group, and wait until they are gone. Returns how many there were.
    Used when a track is taken back from a worker that can no longer kill its own processes."""
    wanted = {f"{MARKER}={m}".encode() for m in markers}
    if not wanted:
        return 0
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if wanted.intersection(env.split(b"\0")):
            found.append(int(entry))
    for pid in found:
        for kill in (lambda: os.killpg(os.getpgid(pid), signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + wait
    while found and time.monotonic() < deadline:
        found = [pid for pid in found if process_running(pid)]
        if found:
            time.sleep(0.01)
    return len(found)


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a zombie runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
