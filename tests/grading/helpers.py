"""Helpers shared by the grading tests: where the fixtures are, the command line, and
the points of a report."""

import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
QUICK = FIXTURES / "quick"  # the quick assignment: two exercises, cheap to grade


def run_cli(*args, cwd):
    """``python -m attnlib ARGS`` run in ``cwd``: the finished process, output as text."""
    return subprocess.run([sys.executable, "-m", "attnlib", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def points(report):
    """``{exercise id: points scored}`` of a grading report."""
    return {e.id: e.score for e in report.exercises}
