"""The grading limits' defaults and the kinds of outcome a graded cell can have.

Every default lives here, once: ``GradingExecute``'s settings, the command
line's help text and the sandbox read them from this module, and a test checks
that ``nbgrader_config.py`` and the README state the same values.
"""

from __future__ import annotations

import enum

MiB = 2**20
GiB = 2**30

CELL_TIMEOUT = 60             # seconds a cell may run before it is interrupted
NOTEBOOK_TIMEOUT = 900        # seconds the whole notebook may run; the rest is not run
MEMORY = "4GiB"               # memory the sandbox may use, all its processes together
CPU_TIME = 900                # seconds of CPU time the kernel may use in all
PROCESSES = 512               # processes and threads the sandbox may run at once
SCRATCH_SIZE = "1GiB"         # what the kernel may write in its scratch folder, in all
OUTPUT_CHARS = 100_000        # characters of printed output kept per cell
DISPLAY_CHARS = 2_000_000     # characters of display outputs (figures, HTML...) kept per cell
FILE_SIZE = 256 * MiB         # bytes: the largest file the kernel may write
SHM_SIZE = 64 * MiB           # bytes: the sandbox's /dev/shm
SANDBOX = True                # run the kernel in bubblewrap where it is available
JOBS = 2                      # submissions a class is graded at the same time, on this machine


class Outcome(enum.Enum):
    """What went wrong in a graded cell, beyond a failing check.

    The value is the ``ename`` of the error output the grader adds to the cell,
    so the grade, the feedback and ``python -m attnlib grade`` tell the same
    story. The grader also lists a cell's outcomes in its metadata
    (:data:`METADATA_KEY`), which is what the report reads: nothing is decided
    from a message's text.
    """
    KERNEL_DIED = "KernelDied"            # the kernel process died in this cell
    TIMEOUT = "CellTimeoutError"          # the cell ran past the time limit
    TAMPERING = "TamperingDetected"       # the submission changed what the checks rely on
    RESTARTED = "KernelRestarted"         # a new kernel ran the rest of the notebook
    NOTEBOOK_TIMEOUT = "NotebookTimeoutError"  # the notebook ran out of time: not run

    @property
    def needs_manual_grading(self) -> bool:
        """Whether a person should look at a notebook with this outcome. A timed-out
        cell that stopped when interrupted left its kernel intact: later cells
        were graded as usual."""
        return self is not Outcome.TIMEOUT


METADATA_KEY = "attnlib_outcomes"  # cell metadata: the Outcome values, in order
STDERR_KEY = "attnlib_stderr"      # cell metadata: this test wrote to stderr (kept as output)


def record(cell, outcome: Outcome) -> None:
    """Note ``outcome`` in the metadata of ``cell`` (a notebook cell)."""
    found = cell.metadata.setdefault(METADATA_KEY, [])
    if outcome.value not in found:
        found.append(outcome.value)


def outcomes(cell) -> list[Outcome]:
    """The outcomes recorded in the metadata of ``cell``."""
    return [Outcome(value) for value in cell.get("metadata", {}).get(METADATA_KEY, [])]
