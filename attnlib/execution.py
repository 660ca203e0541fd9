"""Deprecated: ``attnlib.execution.GradingExecute`` moved to ``attnlib.grading.execute.GradingExecute``.

Kept for one release so that an ``nbgrader_config.py`` copied before the move
keeps working; name the new path in it.
"""

import warnings

from .grading.execute import GradingExecute

warnings.warn("attnlib.execution is deprecated: use attnlib.grading.execute.GradingExecute in "
              "nbgrader_config.py", DeprecationWarning, stacklevel=2)

__all__ = ["GradingExecute"]
