"""Command line: ``python -m attnlib grade <notebook> [--json]``, ``python -m attnlib
release`` and ``python -m attnlib autograde <chapter> [--jobs N | --scheduler ADDRESS]
[--json]``."""

from __future__ import annotations

import argparse
import json
import sys

from . import limits
from .course import CourseError, chapter_ids, release


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _size(text: str) -> str:
    from .sandbox import parse_size

    try:
        parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _limit_options(parser: argparse.ArgumentParser) -> None:
    """The options that override the limits of nbgrader_config.py."""
    parser.add_argument("--timeout", type=_positive, metavar="SECONDS",
                        help=f"stop a cell after this many seconds (default {limits.CELL_TIMEOUT})")
    parser.add_argument("--memory", type=_size, metavar="SIZE",
                        help=f"memory the kernel may use, e.g. 2GiB (default {limits.MEMORY})")
    parser.add_argument("--cpu-time", type=_positive, metavar="SECONDS",
                        help=f"CPU seconds the kernel may use in all (default {limits.CPU_TIME})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnlib",
                                     description="Tools of the attention book.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade_cmd = commands.add_parser("grade", help="grade a chapter notebook with its hidden tests")
    grade_cmd.add_argument("notebook", help="path to your copy of a chapter, e.g. 01_softmax.ipynb")
    grade_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    _limit_options(grade_cmd)
    release_cmd = commands.add_parser(
        "release", help="regenerate the learner editions in chapters/ from solutions/")
    release_cmd.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    class_cmd = commands.add_parser(
        "autograde", help="autograde a whole class in parallel (instructors; run it in the "
                          "course folder, like nbgrader)")
    class_cmd.add_argument("chapter", help="the assignment, e.g. 01_softmax")
    where = class_cmd.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=_positive, metavar="N",
                       help="submissions graded at the same time on this machine "
                            f"(default {limits.JOBS})")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on the Dask cluster whose scheduler is at ADDRESS, "
                            "e.g. tcp://10.0.0.5:8786")
    class_cmd.add_argument("--json", action="store_true",
                           help="print the summary as JSON (the progress bar goes to stderr)")
    class_cmd.add_argument("--course", default=".", metavar="DIR",
                           help="the course folder, holding nbgrader_config.py (default: .)")
    _limit_options(class_cmd)
    args = parser.parse_args(argv)
    overrides = {"timeout": getattr(args, "timeout", None), "memory": getattr(args, "memory", None),
                 "cpu_time": getattr(args, "cpu_time", None)}
    try:
        if args.command == "grade":
            from .grade_one import grade  # imports nbgrader only when grading

            report = grade(args.notebook, **overrides)
            print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
        elif args.command == "autograde":
            from .grade_class import autograde_class

            report = autograde_class(args.course, args.chapter, jobs=args.jobs or limits.JOBS,
                                     scheduler=args.scheduler, **overrides)
            print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
        else:
            release(args.chapters or chapter_ids())
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
