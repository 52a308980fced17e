"""Running one script: exit codes, captured and capped output, masking, timeouts that kill
the whole process tree."""
import os
import time

from pipeline_engine import executor


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie that nobody reaped yet is not running
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone(pid: int, within: float = 2.0) -> bool:
    """Whether ``pid`` stops running within ``within`` seconds (a kill is not instant)."""
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def test_output_exit_code_and_environment():
    outcome = executor.run_script('echo "out $PE_x"; echo err >&2', {"PE_x": "a b"})
    assert (outcome.exit_code, outcome.stdout, outcome.stderr, outcome.ok) == (0, "out a b\n", "err\n", True)
    assert executor.run_script("exit 7").exit_code == 7


def test_a_failing_command_fails_the_vertex_even_mid_script_or_in_a_pipe():
    outcome = executor.run_script("false; echo not reached")
    assert outcome.exit_code == 1 and outcome.stdout == ""
    assert executor.run_script("false | cat; echo not reached").exit_code == 1


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    outcome = executor.run_script(f"sleep 300 & echo $! > {pidfile}; wait", timeout=0.5, kill_grace=0.5)
    assert outcome.timed_out and not outcome.ok and "timed out after 0.5 s" in outcome.error
    assert time.monotonic() - started < 5
    child = int(pidfile.read_text())
    assert gone(child)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    pidfile = tmp_path / "child.pid"
    outcome = executor.run_script(f"bash -c 'trap \"\" TERM; echo $$ > {pidfile}; sleep 300' & wait",
                                  timeout=0.5, kill_grace=0.3)
    assert outcome.timed_out
    child = int(pidfile.read_text())
    assert gone(child)


def test_background_children_left_by_a_finished_script_are_ended(tmp_path):
    pidfile = tmp_path / "child.pid"
    outcome = executor.run_script(f"sleep 300 & echo $! > {pidfile}; echo done")
    assert outcome.ok and outcome.stdout == "done\n" and outcome.duration < 5
    child = int(pidfile.read_text())
    assert gone(child)


def test_output_is_capped_to_its_tail():
    outcome = executor.run_script("head -c 5000000 /dev/zero | tr '\\0' a; echo; echo the end", output_cap=1024)
    assert outcome.ok
    assert outcome.stdout.startswith("[... ") and "bytes truncated ...]" in outcome.stdout
    assert outcome.stdout.endswith("the end\n")
    body = outcome.stdout.split("]\n", 1)[1]
    assert len(body.encode()) == 1024


def test_secrets_are_masked_in_output_even_at_the_cut():
    outcome = executor.run_script('echo "token=$PE_pw"; echo "$PE_pw" >&2', {"PE_pw": "hunter2"},
                                  secrets=["hunter2"])
    assert outcome.stdout == "token=********\n" and outcome.stderr == "********\n"
    outcome = executor.run_script('printf "%s" "$PE_pw"; printf "%0.s-" $(seq 1 6)', {"PE_pw": "hunter2"},
                                  secrets=["hunter2"], output_cap=8)
    # masked before the cut: the kept tail is mask characters, never the secret's last letters
    assert outcome.stdout.split("]\n", 1)[1] == "**------"


def test_the_log_file_gets_the_full_output_with_secrets_masked_across_reads(tmp_path):
    log = tmp_path / "logs" / "v.log"
    # 200 KiB on stdout, far past a 1 KiB cap, with the secret printed every few bytes so that
    # reads of the pipe split some of its occurrences
    script = "for i in $(seq 20000); do printf 'hunter2-'; done; echo; echo tail-err >&2"
    outcome = executor.run_script(script, secrets=["hunter2"], output_cap=1024, log_path=str(log),
                                  log_header="attempt 1")
    assert outcome.ok and outcome.log_path == str(log)
    text = log.read_text()
    assert text.startswith("--- attempt 1 ---\n")
    assert "hunter" not in text and text.count("********-") == 20000 and "tail-err\n" in text
    assert len(outcome.stdout.encode()) < 1100 and "truncated" in outcome.stdout
    executor.run_script("echo second", log_path=str(log), log_header="attempt 2")
    assert log.read_text().endswith("--- attempt 2 ---\nsecond\n")


def test_log_masking_holds_back_a_secret_split_between_two_chunks(tmp_path):
    log = executor._LogFile(str(tmp_path / "x.log"), None, ["abcdef", "xyz"])
    for chunk in [b"1 ab", b"cd", b"ef 2 x", b"y", b"z 3 ab", b"c"]:
        log.feed(1, chunk)
    log.close()
    assert (tmp_path / "x.log").read_text() == "1 ******** 2 ******** 3 abc"


def test_an_unwritable_log_file_fails_the_attempt_with_a_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    outcome = executor.run_script("true", log_path=str(blocker / "v.log"))
    assert not outcome.ok and "cannot write the log file" in outcome.error
