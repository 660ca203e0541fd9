"""How attnlib grades a notebook (``python -m attnlib grade``, ``autograde``, nbgrader).

A learner's notebook travels through these modules, in this order:

1. :mod:`.cli` reads the command; :mod:`.grade_one` matches the notebook to its
   chapter and sets up a throwaway nbgrader course (:mod:`.course`) holding
   only that chapter's source, with its hidden tests. (:mod:`.grade_class`
   does the same for every submission of a class, on the Dask workers of
   :mod:`.distributed`, then lets one ``nbgrader autograde`` write the gradebook.)
2. nbgrader's ``autograde`` sanitizes the submission: :mod:`.restore_cells`
   puts back deleted exercises, nbgrader puts back the instructor's tests.
3. :mod:`.execute` runs it in a kernel inside the sandbox of :mod:`.sandbox`
   (bubblewrap, no network, memory and CPU limits), cell by cell, surviving
   crashes and endless loops.
4. Around every test cell, :mod:`.tamper_checks` (code that runs *inside* the
   learner's kernel) fingerprints what the checks rely on; a change scores 0.
   The hidden part of a test cell calls :mod:`.probe` (in the kernel too): it
   calls the learner's function on the inputs of its exercise (:mod:`.exercises`)
   and publishes the results as plain data.
5. :mod:`.verdicts`, back in the grader's process, compares those results with
   references it computes itself and writes each hidden check's verdict.
6. nbgrader records the points; :mod:`.grade_one` turns them and the outcomes
   into a report: a table, or JSON.
7. ``nbgrader generate_feedback`` writes the learner's feedback without the
   hidden tests: :mod:`.feedback`.

:mod:`.limits` owns every limit's default and the kinds of outcome. ``import
attnlib`` imports none of this.
"""
