"""The grading kernel's sandbox: what a submission can reach, and the limits it runs under.

The fixtures (tests/grading/fixtures/*.ipynb) are chapter 01 submissions that try to get
out (their first cell says how) and print what each attempt did.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnlib.grading import sandbox
from attnlib.grading.course import ROOT
from attnlib.grading.grade_one import grade
from tests.grading.helpers import FIXTURES, points

needs_bwrap = pytest.mark.skipif(sandbox.unavailable() is not None,
                                 reason=f"no sandbox here: {sandbox.unavailable()}")


def printed(report):
    return "".join(o.get("text", "") for c in report.executed.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")


@needs_bwrap
def test_solutions_and_hidden_tests_are_out_of_reach():
    report = grade(FIXTURES / "read_secrets.ipynb")
    out = printed(report)
    assert "solutions/01_softmax/01_softmax.ipynb: refused" in out
    assert "DONE" not in out and "hidden tests reachable: False" in out
    # it could not copy the instructor's solution, so its wrong answer failed
    assert points(report) == {"stable_softmax": 0, "log_softmax_lse": 2, "masked_softmax": 3,
                              "softmax_jacobian": 3}, report.table()


@needs_bwrap
def test_gradebooks_are_out_of_reach():
    report = grade(FIXTURES / "write_gradebook.ipynb")
    out = printed(report)
    assert "gradebook.db: refused" in out and "DONE" not in out
    assert "gradebooks found under /tmp: 0" in out  # the grader's own is in its /tmp
    assert report.score == report.max_score == 10, report.table()


@needs_bwrap
def test_the_repository_and_the_environment_are_read_only():
    before = set(os.listdir(ROOT))
    report = grade(FIXTURES / "write_repository.ipynb")
    out = printed(report)
    assert out.count(": refused (OSError)") == 5 and "write the scratch folder: DONE" in out
    listing = out.split("the repository holds: ")[1].splitlines()[0]
    assert "solutions" not in listing and "tests" not in listing and "chapters" not in listing
    assert set(os.listdir(ROOT)) == before
    assert not (ROOT / "attnlib" / "written_by_a_submission.py").exists()
    assert report.score == report.max_score, report.table()


@needs_bwrap
def test_no_network():
    out = printed(grade(FIXTURES / "network.ipynb"))
    assert "resolve pypi.org: refused" in out and "connect to 1.1.1.1:80: refused" in out


def test_memory_limit_refuses_a_large_allocation():
    report = grade(FIXTURES / "memory_hog.ipynb", memory="1GiB")
    cell = next(c for c in report.executed.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "stable_softmax")
    assert [o.ename for o in cell.outputs if o.output_type == "error"] == ["MemoryError"]
    assert points(report)["stable_softmax"] == 0 and report.score == 8, report.table()


def test_without_bubblewrap_grading_goes_on_and_says_so(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on this PATH
    run = subprocess.run([sys.executable, "-m", "attnlib", "grade", FIXTURES / "right.ipynb",
                          "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["sandbox"] is None and out["score"] == out["max_score"] == 10
    assert "graded without a sandbox (bubblewrap is not installed" in out["notes"][0]


def test_a_sandbox_that_cannot_start_the_kernel_is_reported_clearly(tmp_path):
    fake = tmp_path / "bwrap"  # passes the availability probe, then fails to mount
    fake.write_text('#!/bin/sh\ncase "$*" in *" -- true") exit 0;; esac\n'
                    'echo "bwrap: Can\'t mount proc on /newroot/proc" >&2\nexit 1\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(tmp_path), os.environ["PATH"]])}
    run = subprocess.run([sys.executable, "-m", "attnlib", "grade", FIXTURES / "right.ipynb"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert "the grading kernel did not start in the bubblewrap sandbox" in run.stderr
    assert "Can't mount proc" in run.stderr and "GradingExecute.sandbox = False" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_the_sandbox_binds_only_what_the_kernel_needs(tmp_path):
    scratch, connection = tmp_path / "scratch", tmp_path / "kernel.json"
    command = sandbox.bwrap_command(str(scratch), sandbox.kernel_env(str(scratch)),
                                    str(connection), 2**30, 9)
    pairs = {(flag, command[i + 1]) for i, flag in enumerate(command[:-1])}
    assert {"--unshare-all", "--die-with-parent", "--new-session", "--clearenv"} <= set(command)
    # the scratch folder, the only writable one, is a tmpfs of the size given
    assert command[command.index(str(scratch)) - 3:command.index(str(scratch))] == [
        "--size", str(2**30), "--tmpfs"]
    assert ("--ro-bind", str(connection)) in pairs and ("--info-fd", "9") in pairs
    assert not [flag for flag in command if flag in ("--bind", "--bind-try", "--dev-bind")]
    assert ("--ro-bind", str(Path(sandbox.__file__).parents[1])) in pairs  # attnlib, read-only
    bound = [command[i + 1] for i, flag in enumerate(command) if flag.endswith("bind")]
    for secret in (ROOT, ROOT / "solutions", ROOT / "tests", ROOT / "chapters", Path.home()):
        assert str(secret) not in bound
    assert command[-1] == "--"
    assert {("--remount-ro", "/tmp"), ("--remount-ro", "/dev"), ("--remount-ro", "/")} <= pairs
    # an environment under /tmp (a clone there, say) stays visible over the private /tmp
    tmp = next(i for i, arg in enumerate(command) if command[i - 1:i + 1] == ["--tmpfs", "/tmp"])
    for path in sandbox._python_dirs():
        assert command.index(path) > tmp


@pytest.mark.parametrize("text, size", [("4GiB", 4 * 2**30), ("512 MiB", 512 * 2**20),
                                        ("2G", 2 * 2**30), ("1073741824", 2**30)])
def test_memory_sizes(text, size):
    assert sandbox.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1GiB", "0", "4 GB of RAM"])
def test_bad_memory_sizes(text):
    with pytest.raises(ValueError, match="memory limit"):
        sandbox.parse_size(text)
