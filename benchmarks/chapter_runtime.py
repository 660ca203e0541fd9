"""How long a learner waits: each chapter run top to bottom, and graded.

    .venv/bin/python benchmarks/chapter_runtime.py [--repeat 3] [--chapters 01_softmax ...]

For every chapter, ``repeat`` times, interleaved:

- the learner edition (``chapters/``) and the solution edition (``solutions/``) run top
  to bottom in a fresh kernel, kernel start included, as ``jupyter nbconvert --execute``
  runs them (a failing exercise check does not stop the learner edition);
- ``python -m attnlib grade`` on the solution edition, in a fresh process, as a learner
  runs it (sandbox and tamper checks included).

It prints the medians, the grading time minus the solution edition's run time (the
grader's own overhead), and the three slowest cells of the solution edition with their
first line. The machine may be shared: run it with nothing else heavy running.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from attnlib.grading.course import ROOT, chapter_ids, source_notebook


def run_notebook(path: Path) -> tuple[float, list[tuple[float, str]]]:
    """Wall seconds to run the notebook at ``path`` in a new kernel (start included), and
    ``(seconds, first line)`` of each code cell."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                            record_timing=True, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    cells = []
    for cell in nb.cells:
        stamps = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in stamps:
            began, ended = (datetime.fromisoformat(stamps[k].replace("Z", "+00:00"))
                            for k in ("iopub.execute_input", "shell.execute_reply"))
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            cells.append(((ended - began).total_seconds(), first[:60]))
    return seconds, cells


def grade_seconds(path: Path) -> float:
    """Wall seconds of ``python -m attnlib grade path`` in a fresh process."""
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "attnlib", "grade", str(path)], cwd=cwd,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"grading {path} failed:\n{done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--chapters", nargs="*", default=None, help="chapter ids (default all)")
    args = parser.parse_args()
    chapters = args.chapters or chapter_ids()
    learner, solution, grading, slowest = {}, {}, {}, {}
    for _ in range(args.repeat):
        for chapter in chapters:
            source = source_notebook(chapter)
            learner.setdefault(chapter, []).append(
                run_notebook(ROOT / "chapters" / chapter / f"{chapter}.ipynb")[0])
            seconds, cells = run_notebook(source)
            solution.setdefault(chapter, []).append(seconds)
            slowest.setdefault(chapter, []).append(cells)
            grading.setdefault(chapter, []).append(grade_seconds(source))
    median = statistics.median
    print(f"seconds, median of {args.repeat} (kernel start included)\n")
    print(f"{'chapter':<24}{'learner':>9}{'solution':>10}{'grading':>9}{'overhead':>10}")
    for chapter in chapters:
        run, grade = median(solution[chapter]), median(grading[chapter])
        print(f"{chapter:<24}{median(learner[chapter]):>9.1f}{run:>10.1f}{grade:>9.1f}"
              f"{grade - run:>10.1f}")
    print(f"{'all chapters':<24}{sum(median(v) for v in learner.values()):>9.1f}"
          f"{sum(median(v) for v in solution.values()):>10.1f}"
          f"{sum(median(v) for v in grading.values()):>9.1f}")
    print("\nslowest cells of each solution edition (median seconds, first line)")
    for chapter in chapters:
        runs = slowest[chapter]
        per_cell = [(median(run[i][0] for run in runs), runs[0][i][1])
                    for i in range(len(runs[0]))]
        for seconds, first in sorted(per_cell, reverse=True)[:3]:
            print(f"{chapter:<24}{seconds:>6.1f}  {first}")


if __name__ == "__main__":
    main()
