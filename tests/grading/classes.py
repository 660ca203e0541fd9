"""Classes of students for the tests (and the benchmark) that grade a whole class.

The quick assignment (``fixtures/quick``) has two exercises, each with a visible
and a hidden test that carries a message; grading a submission of it costs
little more than starting a kernel, so a class of 20 grades in a minute or two.
Its submissions are learner editions answered four ways.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from attnlib.grading.course import ROOT

QUICK = Path(__file__).parent / "fixtures" / "quick"
# submission fixture -> points out of 5
QUICK_ANSWERS = {"right": 5, "add_negatives": 3, "mean_floor": 2, "unanswered": 0}
# submission fixture -> the message of the hidden check it fails
HIDDEN_FAILURES = {"add_negatives": "add(-4, 4) should be 0: mind negative numbers",
                   "mean_floor": "mean([1, 2]) should be 1.5: divide without rounding"}


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
