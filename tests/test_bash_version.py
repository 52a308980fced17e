"""Scripts run only with a bash that parses them as the placeholder reader (shell.py) does."""
import pytest

from pipeline_engine import executor
from pipeline_engine.errors import SettingError
from pipeline_engine.shell import BASH_MODELLED


def test_the_bash_that_runs_scripts_is_one_the_reader_models():
    assert executor.check_bash() >= BASH_MODELLED


def test_an_older_bash_is_refused_by_name_and_version(tmp_path):
    # a program that answers the version question as bash 5.1 does (no older bash is installed here)
    old = tmp_path / "bash"
    old.write_text('#!/bin/sh\nprintf "5.1"\n')
    old.chmod(0o755)
    assert executor.bash_version(str(old)) == (5, 1)
    with pytest.raises(SettingError, match=rf"{old} is bash 5\.1: pipeline_engine reads scripts as bash 5\.2"
                                           r" parses them .* install it as"):
        executor.check_bash(str(old))


def test_a_missing_or_silent_bash_is_a_setting_error(tmp_path):
    with pytest.raises(SettingError, match="cannot run"):
        executor.check_bash(str(tmp_path / "nope"))
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexit 3\n")
    silent.chmod(0o755)
    with pytest.raises(SettingError, match=r"does not report a bash version \(exit 3\)"):
        executor.check_bash(str(silent))
