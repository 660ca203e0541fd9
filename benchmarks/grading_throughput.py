"""Grading throughput: seconds per submission for each chapter, and a whole class.

    .venv/bin/python benchmarks/grading_throughput.py [--repeat 3] [--class-repeat 2]
                                                      [--students 20] [--jobs 2]

1. Per chapter: ``python -m attnlib grade`` on the chapter's solution edition, as a
   learner runs it (a fresh process each time), ``repeat`` times; the median.
2. A class of ``students`` submissions of the first chapter (its solution edition), in
   a throwaway copy of the course: plain ``nbgrader autograde`` (one student after the
   other) against ``python -m attnlib autograde --jobs N``, each on a fresh copy,
   alternately ``class-repeat`` times; the medians.

All runs use the sandbox and checks of nbgrader_config.py. The machine may be shared:
read the ratio, measured side by side in one run, rather than the absolute seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attnlib.grading.course import ROOT, chapter_ids, source_notebook


def timed(*command: str, cwd: Path) -> float:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *command], cwd=cwd, env=env,
                          capture_output=True, text=True)
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
            print(f"{chapter:<28}{statistics.median(runs):>8.1f}")


def new_class(base: Path, chapter: str, students: int) -> Path:
    """A released copy of the course with ``students`` submissions of ``chapter``."""
    course = base / "course"
    shutil.copytree(ROOT / "solutions" / chapter, course / "solutions" / chapter)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    timed("nbgrader", "generate_assignment", chapter, cwd=course)
    for number in range(1, students + 1):
        folder = course / "submitted" / f"student{number:02d}" / chapter
        folder.mkdir(parents=True)
        shutil.copy(source_notebook(chapter), folder / f"{chapter}.ipynb")
    return course


def whole_class(students: int, jobs: int, repeat: int) -> None:
    chapter = chapter_ids()[0]
    graders = {"nbgrader autograde (serial)": ("nbgrader", "autograde", chapter),
               f"python -m attnlib autograde --jobs {jobs}":
                   ("attnlib", "autograde", chapter, "--jobs", str(jobs))}
    runs = {name: [] for name in graders}
    for _ in range(repeat):  # alternate, so that both see the same load on a shared machine
        for name, command in graders.items():
            with tempfile.TemporaryDirectory() as base:
                course = new_class(Path(base), chapter, students)
                runs[name].append(timed(*command, cwd=course))
    print(f"\na class of {students} submissions of {chapter}, {os.cpu_count()} cores, "
          f"median of {repeat}")
    print(f"{'grader':<40}{'seconds':>8}{'per submission':>16}{'speed-up':>10}")
    serial = statistics.median(next(iter(runs.values())))
    for name, seconds in runs.items():
        median = statistics.median(seconds)
        print(f"{name:<40}{median:>8.1f}{median / students:>16.1f}{serial / median:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per chapter")
    parser.add_argument("--class-repeat", type=int, default=2, help="runs of each class grader")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    per_chapter(args.repeat)
    whole_class(args.students, args.jobs, args.class_repeat)
