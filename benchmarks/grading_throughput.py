"""Grading throughput: a whole class, by serial nbgrader, ``--jobs N`` and a Dask cluster.

    .venv/bin/python benchmarks/grading_throughput.py [--students 20 200] [--jobs 2]
                                                      [--repeat 1] [--per-chapter]

For each class size, a class of the quick fixture assignment (two exercises with
hidden tests, tests/grading/fixtures/quick) in a fresh course folder, graded by:

- ``nbgrader autograde`` (one student after the other);
- ``python -m attnlib autograde --jobs N`` (a local Dask cluster of N workers);
- ``python -m attnlib autograde --scheduler ADDRESS``: a ``dask scheduler`` and N
  ``dask worker`` processes started beforehand, as on a real cluster.

Each run is timed from the command's start to its end (gradebook written), and
``repeat`` runs of each grader alternate; the medians are printed as submissions
per minute, worker-seconds per submission (seconds x workers / submissions), the
submissions one worker core grades per hour, and the overhead per submission:
worker-seconds per submission minus the time to execute the notebook alone (a
fresh kernel, no sandbox, no nbgrader; the median of 5). All graders use the
sandbox and checks of nbgrader_config.py.

``--per-chapter`` first times ``python -m attnlib grade`` on each chapter's solution
edition (a fresh process each time, median of ``repeat``).

The machine may be shared: read the ratios, measured side by side in one run,
rather than the absolute seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from attnlib.grading.course import ROOT, chapter_ids, source_notebook

sys.path.insert(0, str(ROOT))  # the test suite's class fixtures and cluster helper
from tests.grading.classes import QUICK, dask_cluster, quick_class, run  # noqa: E402


def timed(*command: str, cwd: Path) -> float:
    start = time.perf_counter()
    done = run(*command, cwd=cwd, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start


def per_chapter(repeat: int) -> None:
    print(f"seconds per submission: `python -m attnlib grade <solution edition>`, "
          f"median of {repeat}")
    print(f"{'chapter':<28}{'seconds':>8}")
    with tempfile.TemporaryDirectory() as cwd:
        for chapter in chapter_ids():
            runs = [timed("attnlib", "grade", str(source_notebook(chapter)), cwd=Path(cwd))
                    for _ in range(repeat)]
            print(f"{chapter:<28}{statistics.median(runs):>8.1f}", flush=True)


def execution_alone(repeat: int = 5) -> float:
    """Median seconds to execute a right submission in a fresh kernel, nothing else."""
    runs = []
    for _ in range(repeat):
        nb = nbformat.read(QUICK / "submissions" / "right.ipynb", as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, kernel_name="python3").execute()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def whole_class(students: int, jobs: int, repeat: int, base: Path) -> dict[str, float]:
    """Median seconds of each grader on a class of ``students``."""
    runs = {"nbgrader autograde (serial)": [], f"autograde --jobs {jobs}": [],
            f"autograde --scheduler ({jobs} dask workers)": []}
    for attempt in range(repeat):  # alternate, so all see the same load on a shared machine
        for number, name in enumerate(runs):
            course = base / f"class{students}-{attempt}-{number}"
            quick_class(course, students)
            if number == 0:
                runs[name].append(timed("nbgrader", "autograde", "quick", cwd=course))
            elif number == 1:
                runs[name].append(timed("attnlib", "autograde", "quick", "--jobs", str(jobs),
                                        cwd=course))
            else:
                with dask_cluster(base, workers=jobs) as address:
                    runs[name].append(timed("attnlib", "autograde", "quick",
                                            "--scheduler", address, cwd=course))
            print(f"  {name}, {students} students: {runs[name][-1]:.0f} s", file=sys.stderr,
                  flush=True)
    return {name: statistics.median(seconds) for name, seconds in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--jobs", type=int, default=2, help="workers of --jobs and of Dask")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each grader")
    parser.add_argument("--per-chapter", action="store_true",
                        help="first time `python -m attnlib grade` on every chapter")
    args = parser.parse_args()
    if args.per_chapter:
        per_chapter(args.repeat)
    alone = execution_alone()
    print(f"the quick assignment, {os.cpu_count()} cores, median of {args.repeat}; "
          f"executing one submission alone: {alone:.2f} s")
    print(f"{'grader':<40}{'students':>9}{'seconds':>9}{'per min':>9}"
          f"{'worker-s/sub':>14}{'per core-hour':>15}{'overhead s/sub':>16}")
    with tempfile.TemporaryDirectory(prefix="attnlib-bench-") as base:
        for students in args.students:
            for name, seconds in whole_class(students, args.jobs, args.repeat,
                                             Path(base)).items():
                workers = 1 if "serial" in name else args.jobs
                per_submission = seconds * workers / students
                print(f"{name:<40}{students:>9}{seconds:>9.0f}{students * 60 / seconds:>9.1f}"
                      f"{per_submission:>14.2f}{3600 / per_submission:>15.0f}"
                      f"{per_submission - alone:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
