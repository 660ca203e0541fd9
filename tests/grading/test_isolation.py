"""Resources and isolation: what a submission can see of the grader, and what it may use in all.

The fixtures (tests/grading/fixtures/quick/attacks/*.ipynb) are right answers to the quick
assignment plus one cell that attacks the grader (their first cell says how) and prints
what it got. Small limits keep these tests quick.
"""

import os
from pathlib import Path

import nbformat
import pytest

from attnlib.grading import cgroup, sandbox
from attnlib.grading.course import course_config
from attnlib.grading.grade_one import autograde
from attnlib.grading.limits import Outcome
from tests.grading.helpers import QUICK

needs_bwrap = pytest.mark.skipif(sandbox.unavailable() is not None,
                                 reason=f"no sandbox here: {sandbox.unavailable()}")
needs_cgroup = pytest.mark.skipif(cgroup.unavailable() is not None,
                                  reason=f"no control group here: {cgroup.unavailable()}")


def grade_attack(name, **limits):
    """Grade the attack fixture ``name`` against the quick assignment with ``limits``
    (settings of GradingExecute)."""
    nb = nbformat.read(QUICK / "attacks" / f"{name}.ipynb", as_version=4)
    return autograde(nb, QUICK / "quick.ipynb", f"{name}.ipynb",
                     course_config(GradingExecute=limits))


def attack_cell(report):
    """The fixture's attack: the first code cell of the executed notebook."""
    return next(c for c in report.executed.cells if c.cell_type == "code")


def printed(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@needs_bwrap
def test_the_graders_environment_is_nowhere_in_the_sandbox(monkeypatch):
    monkeypatch.setenv("ATTNLIB_GRADER_SECRET", "s3cr3t-t0ken-of-the-grader")
    report = grade_attack("environment_leak")
    out = printed(attack_cell(report))
    assert "/proc/1/environ: " in out and "parent: " in out  # it did look
    assert "s3cr3t-t0ken-of-the-grader" not in out and "ATTNLIB_GRADER_SECRET" not in out
    for name in ("PYTEST_CURRENT_TEST", "VIRTUAL_ENV", "USER"):
        if name in os.environ:
            assert f"{name}=" not in out and f"'{name}'" not in out
    assert report.score == report.max_score == 5, report.table()


@needs_bwrap
@needs_cgroup
def test_forked_children_share_one_memory_limit():
    # 6 x 300 MiB = 1.8 GiB under a 1 GiB limit: per process, every child would hold it
    report = grade_attack("fork_memory", memory_limit="1GiB")
    out = printed(attack_cell(report))
    held = int(out.split("still holding it: ")[1].split()[0])
    assert 300 * held <= 1024, out
    assert report.score == report.max_score == 5, report.table()
    # the control group went with the kernel
    assert not list(Path("/sys/fs/cgroup").glob(f"**/attnlib-grading-{os.getpid()}-*"))


@needs_bwrap
@pytest.mark.skipif(cgroup.unavailable() is not None and os.geteuid() == 0,
                    reason="as root, only a control group caps the processes")
def test_processes_and_threads_are_capped():
    report = grade_attack("process_bomb", process_limit=64)
    out = printed(attack_cell(report))
    threads = int(out.split("threads started: ")[1].split()[0])
    processes = int(out.split("processes started: ")[1].split()[0])
    assert "threads refused" in out and "processes refused" in out, out
    assert threads < 64 and processes < 64, out
    assert report.score == report.max_score == 5, report.table()


@needs_bwrap
def test_the_scratch_folder_fills_up_inside_the_sandbox():
    report = grade_attack("disk_fill", scratch_limit="32MiB")
    out = printed(attack_cell(report))
    assert "No space left on device" in out, out  # a full tmpfs, not the grader's disk
    assert int(out.split("written: ")[1].split()[0]) < 32
    assert report.score == report.max_score == 5, report.table()


def test_a_notebook_past_its_time_limit_stops_and_asks_for_a_person():
    # three cells of 1 s, then one of 30 s: under its 60 s cell limit, past the 10 s
    # notebook limit, which stops it wherever the kernel's start-up put the deadline
    report = grade_attack("notebook_time", timeout=60, notebook_timeout=10)
    scores = {e.id: e.score for e in report.exercises}
    assert scores == {"add": 2, "mean": 0}, report.table()
    mean = next(e for e in report.exercises if e.id == "mean")
    assert mean.message.startswith(Outcome.NOTEBOOK_TIMEOUT.value)
    assert report.needs_manual_grading
    assert [n for n in report.notes if "ran longer than its 10 s limit" in n], report.notes
    slept = [c for c in report.executed.cells if "time.sleep(" in c.source]
    errors = [[o.get("ename") for o in c.outputs if o.output_type == "error"] for c in slept]
    assert errors[:3] == [[], [], []]  # the short cells before ran to their end
    assert Outcome.NOTEBOOK_TIMEOUT.value in errors[3]  # the long cell was stopped
    assert not slept[4].outputs and not slept[5].outputs  # the cells after were not run
    assert slept[4].get("execution_count") is None


def test_display_outputs_are_capped():
    report = grade_attack("display_flood", display_limit=2_000_000)
    displays = [o for o in attack_cell(report).outputs if "data" in o]
    kept = sum(len(v) for o in displays for v in o["data"].values())
    assert 1_000_000 < kept <= 2_100_000, kept  # 50 MB were shown, and a 5 MB update
    assert "[display output cut: more than 2000000 characters]" in displays[-1]["data"]["text/plain"]
    assert report.score == report.max_score == 5, report.table()


def test_without_a_control_group_grading_goes_on_and_says_so(monkeypatch):
    monkeypatch.setattr(cgroup, "unavailable", lambda: "none here (a test)")
    nb = nbformat.read(QUICK / "submissions" / "right.ipynb", as_version=4)
    report = autograde(nb, QUICK / "quick.ipynb", "right.ipynb", course_config())
    assert report.score == report.max_score == 5, report.table()
    assert ("memory and processes were limited per process, not for the notebook as a whole: "
            "no control group could be made (none here (a test))") in report.notes
