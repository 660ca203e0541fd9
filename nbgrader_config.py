"""nbgrader configuration: this repository is the course directory.

Each chapter id (``01_softmax``, ...) is an assignment. ``solutions/<id>/<id>.ipynb``
is the source (solutions and hidden tests); ``chapters/<id>/<id>.ipynb`` is the
learner edition that ``nbgrader generate_assignment <id>`` writes.

Submissions are executed by ``attnlib.grading.execute.GradingExecute`` instead of
nbgrader's ``Execute``: in a bubblewrap sandbox (no network, read-only system, none
of the grader's environment, only a size-limited scratch folder writable) with
memory, process, CPU-time and time limits, surviving crashes and endless loops, and
scoring 0 a notebook that tampers with the checks.
The hidden checks are then decided in this process, not in the kernel:
``attnlib.grading.verdicts.DecideVerdicts`` compares what each hidden check
published with references it computes itself.
Feedback (``nbgrader generate_feedback``) leaves out the hidden tests and the
tracebacks that quote them: ``attnlib.grading.feedback.HideHiddenTests``.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "attention-book"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "chapters"

# Autograding gives the instructor's cells back their type and metadata and puts back
# deleted exercises before nbgrader puts back their tests, runs the submission with
# GradingExecute and decides the hidden checks with DecideVerdicts (the rest is
# nbgrader's default).
c.Autograde.sanitize_preprocessors = [
    "attnlib.grading.restore_cells.RepairCells",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "attnlib.grading.restore_cells.RestoreSolutionCells",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "attnlib.grading.execute.GradingExecute",
    "attnlib.grading.verdicts.DecideVerdicts",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Per cell: at most this many seconds (then it is interrupted, or its kernel restarted).
c.Execute.timeout = 60
# The whole notebook: at most this many seconds (the rest is not run, and flagged).
c.GradingExecute.notebook_timeout = 900
# The whole sandbox: memory (all its processes together where a cgroup can be made,
# else per process), processes and threads at once, what its scratch folder holds,
# the kernel's CPU seconds, and whether to use the bubblewrap sandbox.
c.GradingExecute.memory_limit = "4GiB"
c.GradingExecute.process_limit = 512
c.GradingExecute.scratch_limit = "1GiB"
c.GradingExecute.cpu_time_limit = 900
c.GradingExecute.sandbox = True
# Per cell: at most this many characters of printed output, and of display outputs.
c.GradingExecute.output_limit = 100_000
c.GradingExecute.display_limit = 2_000_000
# A test cell that a learner deleted is put back and graded.
c.OverwriteCells.add_missing_cells = True
# Feedback shows the learner's code, each check's points and a failed check's message,
# but not the hidden tests nor a traceback that quotes them; False shows them too.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "attnlib.grading.feedback.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.HideHiddenTests.enabled = True
