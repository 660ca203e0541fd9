"""Deprecated: ``attnlib.restore.RestoreSolutionCells`` moved to
``attnlib.grading.restore_cells.RestoreSolutionCells``.

Kept for one release so that an ``nbgrader_config.py`` copied before the move
keeps working; name the new path in it.
"""

import warnings

from .grading.restore_cells import RestoreSolutionCells

warnings.warn("attnlib.restore is deprecated: use "
              "attnlib.grading.restore_cells.RestoreSolutionCells in nbgrader_config.py",
              DeprecationWarning, stacklevel=2)

__all__ = ["RestoreSolutionCells"]
