"""``python -m attnlib ...``: the command line of :mod:`attnlib.grading.cli`."""

import sys

# nbformat validates notebooks with jsonschema, which imports rfc3987_syntax, when installed,
# only to check the "iri" string format, used by no notebook schema; that import compiles
# some 35 parsers and costs every grading run a second or more. Without it, jsonschema leaves
# that one format unchecked.
sys.modules.setdefault("rfc3987_syntax", None)

from .grading.cli import main  # noqa: E402  (after the line above)

if __name__ == "__main__":
    sys.exit(main())
