"""Command line: ``python -m attnlib grade <notebook> [--json]`` and ``python -m attnlib release``."""

from __future__ import annotations

import argparse
import json
import sys

from .course import CourseError, chapter_ids, release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnlib",
                                     description="Tools of the attention book.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade_cmd = commands.add_parser("grade", help="grade a chapter notebook with its hidden tests")
    grade_cmd.add_argument("notebook", help="path to your copy of a chapter, e.g. 01_softmax.ipynb")
    grade_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    release_cmd = commands.add_parser(
        "release", help="regenerate the learner editions in chapters/ from solutions/")
    release_cmd.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.command == "grade":
            from .grading import grade  # imports nbgrader only when grading

            report = grade(args.notebook)
            print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
        else:
            release(args.chapters or chapter_ids())
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
