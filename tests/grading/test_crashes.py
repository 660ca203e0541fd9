"""Endless loops and dying kernels: cut off or survived, with a clear note, the rest graded.

The fixtures (tests/grading/fixtures/*.ipynb) are chapter 01 submissions with all four
exercises right except for one cell that loops or kills its kernel (see their first cell).
Short limits keep these tests quick.
"""


from attnlib.grading.limits import Outcome
from attnlib.grading.grade_one import grade
from tests.grading.helpers import FIXTURES, points


def errors(report, grade_id):
    cell = next(c for c in report.executed.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return {o.ename: o.evalue for o in cell.outputs if o.output_type == "error"}


def test_endless_loop_is_cut_off_at_the_timeout_and_the_rest_graded():
    report = grade(FIXTURES / "infinite_loop.ipynb", timeout=5)
    assert "ran longer than the 5 s limit and was stopped" in errors(
        report, "log_softmax_lse_solution")[Outcome.TIMEOUT.value]
    assert points(report) == {"stable_softmax": 2, "log_softmax_lse": 0, "masked_softmax": 3,
                              "softmax_jacobian": 3}, report.table()
    assert any("log_softmax_lse_solution: CellTimeoutError" in n for n in report.notes)
    assert not report.needs_manual_grading  # interrupted: the same kernel went on


def test_endless_loop_that_ignores_interrupts_gets_a_new_kernel():
    report = grade(FIXTURES / "infinite_loop_ignoring_interrupts.ipynb", timeout=5)
    assert "did not stop when interrupted" in errors(report, "log_softmax_lse_solution")[Outcome.TIMEOUT.value]
    assert points(report) == {"stable_softmax": 2, "log_softmax_lse": 0, "masked_softmax": 3,
                              "softmax_jacobian": 3}, report.table()
    assert report.needs_manual_grading


def test_endless_printing_is_cut_off_and_its_output_capped():
    report = grade(FIXTURES / "infinite_print.ipynb", timeout=5)
    cell = next(c for c in report.executed.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "masked_softmax_solution")
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert 1000 < len(printed) <= 110_000
    assert Outcome.TIMEOUT.value in errors(report, "masked_softmax_solution")
    assert points(report) == {"stable_softmax": 2, "log_softmax_lse": 2, "masked_softmax": 0,
                              "softmax_jacobian": 3}, report.table()


def test_os_exit_keeps_the_points_earned_and_asks_for_a_person():
    report = grade(FIXTURES / "os_exit.ipynb")
    assert "exited with code 3" in errors(report, "masked_softmax_solution")[Outcome.KERNEL_DIED.value]
    # earned before the crash, lost with it, and graded by a new kernel after it
    assert points(report) == {"stable_softmax": 2, "log_softmax_lse": 2, "masked_softmax": 0,
                              "softmax_jacobian": 3}, report.table()
    assert report.needs_manual_grading and any("needs manual grading" in n for n in report.notes)


def test_a_killed_kernel_is_reported_in_the_test_that_killed_it():
    report = grade(FIXTURES / "killed_kernel.ipynb")
    assert "killed by signal SIGKILL" in errors(report, "log_softmax_lse")[Outcome.KERNEL_DIED.value]
    assert points(report) == {"stable_softmax": 2, "log_softmax_lse": 0, "masked_softmax": 3,
                              "softmax_jacobian": 3}, report.table()
    assert report.needs_manual_grading


def test_cpu_time_limit_stops_a_kernel_that_the_timeout_would_not():
    report = grade(FIXTURES / "cpu_hog.ipynb", cpu_time=10, timeout=600)
    assert "CPU time limit (10 s)" in errors(report, "softmax_jacobian_solution")[Outcome.KERNEL_DIED.value]
    assert points(report) == {"stable_softmax": 2, "log_softmax_lse": 2, "masked_softmax": 3,
                              "softmax_jacobian": 0}, report.table()
