"""Every grading default lives in attnlib.grading.limits; the config and the README agree."""

import re
import subprocess
import sys

import pytest

from attnlib.grading import limits
from attnlib.grading.cli import main
from attnlib.grading.course import ROOT, course_config
from attnlib.grading.execute import GradingExecute


def test_nbgrader_config_states_the_defaults():
    config = course_config()
    assert config.Execute.timeout == limits.CELL_TIMEOUT
    assert config.GradingExecute.memory_limit == limits.MEMORY
    assert config.GradingExecute.cpu_time_limit == limits.CPU_TIME
    assert config.GradingExecute.output_limit == limits.OUTPUT_CHARS
    assert config.GradingExecute.sandbox == limits.SANDBOX
    assert config.GradingExecute.notebook_timeout == limits.NOTEBOOK_TIMEOUT
    assert config.GradingExecute.process_limit == limits.PROCESSES
    assert config.GradingExecute.scratch_limit == limits.SCRATCH_SIZE
    assert config.GradingExecute.display_limit == limits.DISPLAY_CHARS


def test_grading_execute_defaults_come_from_limits():
    execute = GradingExecute()
    assert (execute.timeout, execute.memory_limit, execute.cpu_time_limit,
            execute.output_limit, execute.sandbox) == (
        limits.CELL_TIMEOUT, limits.MEMORY, limits.CPU_TIME, limits.OUTPUT_CHARS, limits.SANDBOX)
    assert (execute.notebook_timeout, execute.process_limit, execute.scratch_limit,
            execute.display_limit) == (
        limits.NOTEBOOK_TIMEOUT, limits.PROCESSES, limits.SCRATCH_SIZE, limits.DISPLAY_CHARS)


def test_readme_states_the_defaults():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for text in (f"A cell is stopped after {limits.CELL_TIMEOUT} s",
                 f"may use {limits.MEMORY.replace('GiB', ' GiB')} of memory",
                 f"and {limits.CPU_TIME} s of CPU time",
                 f"cut after {limits.OUTPUT_CHARS:,} characters per cell",
                 f"display outputs (figures, HTML) after {limits.DISPLAY_CHARS:,}",
                 f"A whole notebook is stopped after {limits.NOTEBOOK_TIMEOUT} s",
                 f"at most {limits.PROCESSES} processes and threads",
                 f"a scratch folder of {limits.SCRATCH_SIZE.replace('GiB', ' GiB')}",
                 f"`--jobs N` (default {limits.JOBS})",
                 "attnlib/grading/limits.py"):
        assert text in readme, f"the README does not say: {text}"


def test_help_states_the_defaults(capsys):
    try:
        main(["grade", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    for default in (f"default {limits.CELL_TIMEOUT}", f"default {limits.MEMORY}",
                    f"default {limits.CPU_TIME}"):
        assert default in text


def test_outcome_kinds_are_the_error_names_of_the_report():
    assert {o.value for o in limits.Outcome} == {
        "KernelDied", "CellTimeoutError", "TamperingDetected", "KernelRestarted",
        "NotebookTimeoutError"}
    assert [o for o in limits.Outcome if not o.needs_manual_grading] == [limits.Outcome.TIMEOUT]
    assert re.fullmatch(r"\w+", limits.METADATA_KEY)


def test_import_attnlib_loads_no_grading_code():
    code = ("import sys, attnlib; "
            "print(sorted(m for m in sys.modules if m.startswith(('attnlib.grading', 'nbgrader', "
            "'nbclient', 'jupyter_client'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout


@pytest.mark.parametrize("old, new", [
    ("attnlib.execution.GradingExecute", "attnlib.grading.execute.GradingExecute"),
    ("attnlib.restore.RestoreSolutionCells", "attnlib.grading.restore_cells.RestoreSolutionCells"),
])
def test_an_old_config_path_still_works_and_says_it_is_deprecated(old, new):
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"from traitlets.utils.importstring import import_item\n"
            f"try:\n    import_item({old!r})\nexcept DeprecationWarning as w:\n    print(w)\n"
            f"warnings.simplefilter('ignore')\n"
            f"print(import_item({old!r}) is import_item({new!r}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    warning, same = run.stdout.strip().splitlines()
    assert "deprecated" in warning and new in warning
    assert same == "True"
