"""Classes of students for the tests (and the benchmark) that grade a whole class.

The quick assignment (``fixtures/quick``) has two exercises, each with a visible
and a hidden test that carries a message; grading a submission of it costs
little more than starting a kernel, so a class of 20 grades in a minute or two.
Its submissions are learner editions answered four ways.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
from attnlib.grading.course import ROOT
from tests.grading.helpers import QUICK

# submission fixture -> points out of 5
QUICK_ANSWERS = {"right": 5, "add_negatives": 3, "mean_floor": 2, "unanswered": 0}
# submission fixture -> the message of the hidden check it fails
HIDDEN_FAILURES = {"add_negatives": "add(-4, 4) should be 0: mind negative numbers",
                   "mean_floor": "mean([1, 2]) should be 1.5: divide without rounding"}
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def hidden_lines(source: Path) -> set[str]:
    """The lines (stripped, not blank) of the hidden tests of the source notebook at
    ``source`` that appear nowhere else in it: none may reach a learner's feedback."""
    cells = nbformat.read(source, as_version=4).cells
    shown = {line.strip() for cell in cells for line in HIDDEN.sub("", cell.source).splitlines()}
    return {line.strip() for cell in cells for block in HIDDEN.findall(cell.source)
            for line in block.splitlines() if line.strip() and line.strip() not in shown}


def run(*command, cwd, check=True):
    """Run ``python -m <command>`` in ``cwd`` with this environment's programs first on
    PATH; with ``check``, assert that it succeeded without a traceback."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}
    done = subprocess.run([sys.executable, "-m", *command], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def quick_class(course: Path, students: int, config: str = "") -> dict[str, str]:
    """Make ``course``: this repository's nbgrader_config.py (plus the lines ``config``)
    and the quick assignment, released, with ``students`` submissions that cycle
    through the answers. Returns ``{student: submission fixture}``."""
    (course / "solutions" / "quick").mkdir(parents=True)
    shutil.copy(QUICK / "quick.ipynb", course / "solutions" / "quick")
    (course / "nbgrader_config.py").write_text(
        (ROOT / "nbgrader_config.py").read_text() + config)
    run("nbgrader", "generate_assignment", "quick", cwd=course)
    answers = list(QUICK_ANSWERS)
    roster = {f"student{n:03d}": answers[n % len(answers)] for n in range(students)}
    for student, fixture in roster.items():
        folder = course / "submitted" / student / "quick"
        folder.mkdir(parents=True)
        shutil.copy(QUICK / "submissions" / f"{fixture}.ipynb", folder / "quick.ipynb")
    return roster


@contextmanager
def dask_cluster(folder: Path, workers: int = 2):
    """A Dask scheduler and ``workers`` worker processes (one thread each) on this
    machine, started as an instructor would start them (``dask scheduler``,
    ``dask worker``), stopped afterwards; yields the scheduler's address."""
    from dask.distributed import Client

    dask = [str(Path(sys.executable).with_name("dask"))]
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}
    address_file = folder / "scheduler.json"
    address_file.unlink(missing_ok=True)
    logs = [open(folder / f"dask-{n}.log", "w") for n in range(workers + 1)]
    processes = [subprocess.Popen(
        dask + ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                "--scheduler-file", str(address_file)],
        cwd=folder, env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        deadline = time.monotonic() + 120
        while not address_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert address_file.is_file(), (folder / "dask-0.log").read_text()
        processes += [subprocess.Popen(
            dask + ["worker", "--scheduler-file", str(address_file), "--nworkers", "1",
                    "--nthreads", "1", "--no-dashboard"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs[1:]]
        address = json.loads(address_file.read_text())["address"]
        if workers:
            with Client(address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        for log in logs:
            log.close()
