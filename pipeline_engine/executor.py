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
from contextlib import contextmanager

from pipeline_engine.errors import SettingError
from pipeline_engine.executors.base import Outcome
from pipeline_engine.inputtypes import MASK
from pipeline_engine.settings import process_environ
from pipeline_engine.shell import BASH_MODELLED

SHELL = ("/bin/bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c")
_checked_bash: dict[str, tuple[int, int]] = {}


def bash_version(bash: str = SHELL[0]) -> tuple[int, int]:
    """(major, minor) of the bash at ``bash``, as it reports itself; SettingError if it does
    not run."""
    try:
        out = subprocess.run([bash, "--noprofile", "--norc", "-c",
                              'printf "%s.%s" "${BASH_VERSINFO[0]}" "${BASH_VERSINFO[1]}"'],
                             capture_output=True, text=True, timeout=30, env=process_environ())
    except (OSError, subprocess.SubprocessError) as exc:
        raise SettingError(f"{bash} cannot run: {exc}; vertices are bash scripts") from None
    major, _, minor = out.stdout.strip().partition(".")
    if out.returncode != 0 or not (major.isdigit() and minor.isdigit()):
        raise SettingError(f"{bash} does not report a bash version (exit {out.returncode}); vertices are bash"
                           " scripts")
    return int(major), int(minor)


def check_bash(bash: str = SHELL[0]) -> tuple[int, int]:
    """The version of the bash that runs scripts, if it is at least the one whose grammar
    ``shell`` models; else SettingError: an older bash may parse a script otherwise than the
    reader that keeps ``{param}`` values from running as code. Checked once per process."""
    if bash not in _checked_bash:
        found = bash_version(bash)
        if found < BASH_MODELLED:
            want = ".".join(map(str, BASH_MODELLED))
            raise SettingError(f"{bash} is bash {found[0]}.{found[1]}: pipeline_engine reads scripts as bash {want}"
                               f" parses them (that is how a parameter's value never runs as code) and runs"
                               f" them with bash {want} or newer only; install it as {bash}")
        _checked_bash[bash] = found
    return _checked_bash[bash]


#: bytes of stdout and of stderr kept per track
DEFAULT_OUTPUT_CAP = 64 * 1024
#: seconds between SIGTERM and SIGKILL when a process group is stopped
DEFAULT_KILL_GRACE = 2.0
#: seconds the pipes are still read after the shell ended and its leftovers were killed: a
#: holder the engine cannot find (it dropped the marker) does not hold the attempt any longer
DRAIN = 0.5
_CHUNK = 64 * 1024
_POLL = 0.1  # seconds between looks at the shell where the kernel has no pidfd
#: seconds after the shell's end when pipes still open mean that a process it left holds them
_HELD = 0.1
#: an attempt shorter than this looks for its leftovers only among newer pids (pids do not wrap
#: around in a second); a longer one scans every process
_PID_WINDOW = 1.0


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

    def text(self, secrets: re.Pattern[bytes] | None) -> str:
        """The tail as text, ``secrets`` (a pattern of their bytes) masked before it is decoded."""
        data = self.buf if secrets is None else secrets.sub(MASK.encode(), self.buf)
        text = data.decode("utf-8", errors="replace")
        dropped = self.dropped
        if len(text.encode("utf-8")) > self.cap:
            encoded = text.encode("utf-8")
            dropped += len(encoded) - self.cap
            text = encoded[-self.cap:].decode("utf-8", errors="ignore")
        return f"[... {dropped} bytes truncated ...]\n{text}" if dropped else text


class _LogFile:
    """Streams the full output of an attempt to a file (stdout and stderr interleaved as they
    come), secrets masked even when one is split across two reads."""

    def __init__(self, path: str, header: str | None, secrets: list[str], fresh: bool = False):
        # readable by its owner only, whatever the umask: the output may carry anything;
        # unbuffered: output reaches the file as it arrives (tail -f, logs while it runs);
        # ``fresh``: emptied first, so nothing another run left at this path shows in it
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if fresh else 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            # the run's first file: its directories are made then, not looked for on every attempt
            private_dirs(os.path.dirname(os.path.abspath(path)))
            fd = os.open(path, flags, 0o600)
        self.file = os.fdopen(fd, "ab", buffering=0)
        if header:
            self.file.write(f"--- {header} ---\n".encode())
        found = _secret_bytes(secrets)
        self.pattern = _pattern(found)
        self.prefixes = {x[:k] for x in found for k in range(1, len(x))}
        self.longest_prefix = max(map(len, self.prefixes), default=0)  # none for a 1-byte secret
        self.held: dict[int, bytes] = {}

    def feed(self, fd: int, data: bytes) -> None:
        if self.pattern is None:
            self.file.write(data)
            return
        buf = self.pattern.sub(MASK.encode(), self.held.pop(fd, b"") + data)
        # Hold back a tail that could be the start of a secret finished by the next read.
        keep = next((k for k in range(min(len(buf), self.longest_prefix), 0, -1)
                     if buf[-k:] in self.prefixes), 0)
        if keep:
            self.held[fd] = buf[-keep:]
            buf = buf[:-keep]
        self.file.write(buf)

    def close(self) -> None:
        for rest in self.held.values():
            self.file.write(rest)
        self.file.close()


def _secret_bytes(secrets: Iterable[str]) -> list[bytes]:
    """The secrets as the process gets them (a str that came from bytes that were not UTF-8 keeps
    those bytes), longest first."""
    return sorted({os.fsencode(x) for x in secrets if x}, key=len, reverse=True)


def _pattern(found: list[bytes]) -> re.Pattern[bytes] | None:
    return re.compile(b"|".join(map(re.escape, found))) if found else None


def private_dirs(path: str) -> None:
    """Create directory ``path`` and its missing parents, readable by their owner only."""
    if not os.path.isdir(path):
        private_dirs(os.path.dirname(path))
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


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
               log_path: str | None = None, log_header: str | None = None, log_fresh: bool = False,
               on_spawn: Callable[[int], None] | None = None,
               defer: Callable[[str], None] | None = None) -> Outcome:
    """Run ``script`` to the end (or to ``timeout`` seconds) in a new process group.

    The process runs in ``cwd`` (default: this process's working directory; one that cannot be
    entered is an Outcome with that error, not an exception) and gets this process's environment
    minus the engine's settings (``settings.process_environ``), plus ``env``. When the shell
    exits, whatever it left running is killed: its group, and every process that carries the
    attempt's marker (``env[MARKER]``) wherever it moved (a new session or group); the pipes are
    then read for at most ``DRAIN`` seconds. A vertex is finished when its script is, and leaves no orphans. On timeout the whole
    group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. With ``log_path`` the full
    output is appended to that file too (after a ``--- log_header ---`` line; emptied first with
    ``log_fresh``, as for a track's first attempt), secrets masked;
    the file and the directories made for it are readable by their owner only. ``on_spawn`` is
    called with the process group's id once the shell runs (to kill it from another thread).
    With ``defer``, an attempt that succeeded and left its pipes closed hands its marker to
    ``defer`` instead of looking for marked leftovers itself (a scan of /proc: the caller looks
    for many attempts' at once, soon after)."""
    secrets = [s for s in secrets if s]
    found = _secret_bytes(secrets)
    margin = max(map(len, found), default=0)
    # Bytes, as Popen would encode each variable of a str mapping again on every spawn; a str
    # from bytes that were not UTF-8 gets its bytes back.
    full_env = process_environ()
    if env:
        full_env.update({os.fsencode(k): os.fsencode(v) for k, v in env.items()})
    mark = env.get(MARKER) if env else None
    started = time.monotonic()
    try:
        log = _LogFile(log_path, log_header, secrets, log_fresh) if log_path else None
    except OSError as exc:
        return Outcome(None, False, "", "", 0.0, error=f"cannot write the log file {log_path}: {exc}")
    try:
        proc = subprocess.Popen([*SHELL, script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env, cwd=cwd, start_new_session=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in a variable; no value in the message
        if log is not None:
            log.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        if cwd is not None and isinstance(exc, OSError) and exc.filename == cwd:  # the child's chdir failed
            where = os.path.join(os.getcwd(), cwd) if not os.path.isabs(cwd) else cwd
            return Outcome(None, False, "", "", time.monotonic() - started,
                           error=f"cannot run in the working directory {where}: {why}")
        return Outcome(None, False, "", "", time.monotonic() - started, error=f"could not start bash: {why}")
    if on_spawn is not None:
        on_spawn(proc.pid)
    tails = {proc.stdout.fileno(): _Tail(output_cap, margin), proc.stderr.fileno(): _Tail(output_cap, margin)}
    deadline = None if timeout is None else started + timeout
    timed_out, looked = False, False

    def shell_ended(careful: bool) -> None:
        nonlocal looked
        look = careful or defer is None or proc.returncode != 0
        _end_leftovers(proc.pid, mark if look else None, started, careful)
        looked = looked or look

    try:
        timed_out = _collect(proc, tails, deadline, kill_grace, log, shell_ended)
        proc.wait()
    except BaseException:
        _end_leftovers(proc.pid, mark, started)  # an engine fault: no orphans either
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
        if log is not None:
            log.close()
    if mark is not None and not looked:
        defer(mark)
    pattern = _pattern(found)
    out, err = (tail.text(pattern) for tail in tails.values())
    error = f"timed out after {timeout:g} s; process group killed" if timed_out else None
    return Outcome(proc.returncode, timed_out, out, err, time.monotonic() - started, error=error,
                   log_path=os.path.abspath(log_path) if log_path else None)


def _end_leftovers(pid: int, mark: str | None, started: float, careful: bool = True) -> None:
    """Kill what an attempt whose shell ``pid`` ended left behind: its group, and every process
    carrying its marker (one that left the group: ``setsid``, ``setpgid``)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if mark is not None:
        kill_marked([mark], newer_than=pid if time.monotonic() - started < _PID_WINDOW else None,
                    careful=careful)


def _collect(proc: subprocess.Popen, tails: dict[int, _Tail], deadline: float | None, grace: float,
             log: _LogFile | None, shell_ended: Callable[[bool], None]) -> bool:
    """Read both pipes in this thread (no reader threads: starting them costs more than a short
    script) until the shell has ended and the pipes are at EOF, or ``DRAIN`` seconds after the
    shell ended. ``shell_ended(careful)`` kills what the shell left: at once (quickly), and again
    with care when the pipes are still open a moment later (then someone holds them). Returns
    whether the deadline passed and the group was killed."""
    timed_out = False
    drain_until = again = None  # set when the shell has ended
    try:  # readable when the shell exits: no polling for it while others hold the pipes
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    with selectors.PollSelector() as selector, _closing(pidfd):  # no epoll descriptor to open per process
        for fd in tails:
            selector.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        while True:
            if drain_until is None and proc.poll() is not None:
                if pidfd is not None:
                    selector.unregister(pidfd)
                shell_ended(False)
                drain_until, again = time.monotonic() + DRAIN, time.monotonic() + _HELD
            if drain_until is not None and (not selector.get_map() or time.monotonic() >= drain_until):
                return timed_out
            if again is not None and time.monotonic() >= again:
                again = None
                shell_ended(True)
            if drain_until is None and deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                kill_group(proc.pid, grace, proc)
                continue
            limit = again or drain_until or deadline
            if limit is None:
                wait_s = None if pidfd is not None else _POLL
            else:
                wait_s = max(0.0, limit - time.monotonic())
                wait_s = wait_s if pidfd is not None else min(_POLL, wait_s)
            if not selector.get_map():  # no pidfd, and the script closed its pipes: wait for the shell
                try:
                    proc.wait(wait_s)
                except subprocess.TimeoutExpired:
                    pass
                continue
            for key, _ in selector.select(wait_s):
                if key.fd == pidfd:
                    continue  # the shell ended: seen at the top of the loop
                data = os.read(key.fd, _CHUNK)
                if data:
                    tails[key.fd].feed(data)
                    if log is not None:
                        log.feed(key.fd, data)
                else:
                    selector.unregister(key.fd)


@contextmanager
def _closing(fd: int | None):
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


#: every process of a track's attempt carries this variable (``<database key>:<track>:<attempt>``),
#: so that leftovers of a dead worker can be found on its host and killed before the track runs again
MARKER = "PIPELINE_ENGINE_TRACK"


def marker(db_key: str, track_id: int, attempt: int) -> str:
    return f"{db_key}:{track_id}:{attempt}"


def kill_marked(markers: Iterable[str], wait: float = 5.0, newer_than: int | None = None,
                careful: bool = True) -> int:
    """SIGKILL every process on this host whose environment carries one of ``markers`` (see
    MARKER), with its process group, and wait until they are gone. Returns how many there were.
    Used when an attempt ends (its leftovers, wherever they moved) and when a track is taken back
    from a worker that can no longer kill its own processes. With ``newer_than`` (a pid) only
    processes created after it are looked at: the attempt's shell, for an attempt that lasted too
    short a time for pids to wrap around. ``careful`` waits a moment for processes that show no
    environment (one in the middle of an exec shows none); without it they are passed over."""
    wanted = {f"{MARKER}={m}".encode() for m in markers}
    if not wanted:
        return 0
    killed: set[int] = set()
    for _ in range(5):  # again for what they forked before they got the signal
        found, unsure = _sort_out(_candidates(newer_than), killed, wanted)
        for _ in range(3 if careful else 0):  # one in the middle of an exec shows no environment for a moment
            if not unsure:
                break
            time.sleep(0.005)
            more, unsure = _sort_out(unsure, killed, wanted)
            found += more
        if not found:
            break
        for pid in found:
            for kill in (lambda: os.killpg(os.getpgid(pid), signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except (ProcessLookupError, PermissionError):
                    pass
        killed.update(found)
    left = list(killed)
    deadline = time.monotonic() + wait
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if process_running(pid)]
        if left:
            time.sleep(0.01)
    return len(killed)


def _candidates(newer_than: int | None) -> list[int]:
    """Pids of this host's processes (but this one); with ``newer_than``, those allocated after
    it (pids count up to pid_max, then wrap around to small numbers)."""
    me = os.getpid()
    pids = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != me]
    if newer_than is None:
        return pids
    try:
        with open("/proc/loadavg", "rb") as f:
            last = int(f.read().split()[-1])  # the pid allocated last
    except (OSError, ValueError, IndexError):
        return pids
    if last <= 0:
        return pids
    wrapped = last < newer_than
    return [p for p in pids if p >= newer_than or (wrapped and p <= last)]


def _sort_out(pids, skip: set[int], wanted: set[bytes]) -> tuple[list[int], list[int]]:
    """(the pids that carry one of ``wanted``, those that show no environment now)."""
    found, unsure = [], []
    for pid in pids:
        if pid not in skip:
            carries = _carries(pid, wanted)
            if carries:
                found.append(pid)
            elif carries is None:
                unsure.append(pid)
    return found, unsure


def _carries(pid: int, wanted: set[bytes]) -> bool | None:
    """Whether process ``pid`` carries one of the ``wanted`` variables; None when it shows no
    environment though it runs a program (it is in the middle of an exec, or has none at all)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
        if not env:
            os.readlink(f"/proc/{pid}/exe")  # fails for a kernel thread and a zombie
            return None
    except OSError:  # gone, another user's, a kernel thread
        return False
    return not wanted.isdisjoint(env.split(b"\0"))


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
