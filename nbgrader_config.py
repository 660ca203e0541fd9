"""nbgrader configuration: this repository is the course directory.

Each chapter id (``01_softmax``, ...) is an assignment. ``solutions/<id>/<id>.ipynb``
is the source (solutions and hidden tests); ``chapters/<id>/<id>.ipynb`` is the
learner edition that ``nbgrader generate_assignment <id>`` writes.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "attention-book"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "chapters"

# Grading: the kernel runs each cell for at most this many seconds.
c.Execute.timeout = 300
# A test cell that a learner deleted is put back and graded.
c.OverwriteCells.add_missing_cells = True
