"""Claims are checks: every chapter asserts what its prose states, and nothing depends on a clock.

A claim check is a code cell tagged ``claim`` that is not an nbgrader cell and asserts something.
Each chapter's solution edition needs at least ``MIN_CLAIMS`` of them. No notebook may stop a
loop on the time it has taken (a time budget), because then a slower machine prints other numbers.
"""

import ast

import nbformat
import pytest

from attnlib.grading.course import chapter_ids, source_notebook

CHAPTERS = chapter_ids()
MIN_CLAIMS = 10
CLOCKS = {"time", "perf_counter", "monotonic", "process_time", "thread_time",
          "time_ns", "perf_counter_ns", "monotonic_ns", "process_time_ns", "now", "utcnow"}


def python_source(cell) -> str:
    """The cell's source with IPython magics and shell lines blanked, so that ``ast`` can parse it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def asserts_something(tree: ast.AST) -> bool:
    """True if the code holds an ``assert`` or calls an ``assert...`` function (np.testing, torch.testing)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith("assert"):
                return True
    return False


def claim_cells(nb) -> list[int]:
    """Indices of the cells that count as claim checks."""
    found = []
    for index, cell in enumerate(nb.cells):
        nbgrader = cell.metadata.get("nbgrader", {})
        if (cell.cell_type == "code" and "claim" in cell.metadata.get("tags", [])
                and not (nbgrader.get("grade") or nbgrader.get("solution"))
                and asserts_something(ast.parse(python_source(cell)))):
            found.append(index)
    return found


def _reads_clock(node: ast.AST, tainted: set[str]) -> bool:
    """Does the expression call a clock (``time.perf_counter()``, ...) or use a name computed from one?"""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLOCKS:
                return True
        if isinstance(sub, ast.Name) and sub.id in tainted:
            return True
    return False


def _stops(body: list[ast.stmt]) -> bool:
    return any(isinstance(sub, (ast.Break, ast.Return, ast.Raise)) for stmt in body for sub in ast.walk(stmt))


def time_budgets(sources: list[str]) -> list[str]:
    """Loops whose end depends on a clock, in code cells run in order (names carry across cells).

    A name assigned from a clock, or from another such name, is tainted. A ``while`` whose condition,
    or an ``if`` inside a loop whose test, reads a tainted name and leaves the loop, is a time budget.
    Timing a call and printing the result is not: no loop's end depends on it.
    """
    tainted: set[str] = set()
    found = []
    for cell_index, source in enumerate(sources):
        tree = ast.parse(source)
        changed = True
        while changed:                                      # names derived from names derived from a clock
            changed = False
            for node in ast.walk(tree):
                if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value is not None \
                        and _reads_clock(node.value, tainted):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        for name in ast.walk(target):
                            if isinstance(name, ast.Name) and name.id not in tainted:
                                tainted.add(name.id)
                                changed = True
        for loop in ast.walk(tree):
            if isinstance(loop, ast.While) and _reads_clock(loop.test, tainted):
                found.append(f"cell {cell_index}, line {loop.lineno}: while-loop condition reads a clock")
            if isinstance(loop, (ast.For, ast.While)):
                for node in ast.walk(loop):
                    if isinstance(node, ast.If) and _reads_clock(node.test, tainted) and _stops(node.body):
                        found.append(f"cell {cell_index}, line {node.lineno}: loop leaves on a clock")
    return found


def notebook_sources(nb) -> list[str]:
    return [python_source(c) for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_enough_claim_checks(chapter):
    nb = nbformat.read(source_notebook(chapter), as_version=4)
    found = claim_cells(nb)
    assert len(found) >= MIN_CLAIMS, (
        f"{chapter}: {len(found)} claim-check cells (tag 'claim', outside graded cells, with an assert); "
        f"a chapter needs at least {MIN_CLAIMS}")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_chapter_stops_on_a_time_budget(chapter):
    nb = nbformat.read(source_notebook(chapter), as_version=4)
    budgets = time_budgets(notebook_sources(nb))
    assert not budgets, f"{chapter}: a result depends on the speed of the machine: {budgets}"


BUDGET_LOOP = """
import time
start = time.perf_counter()
for step in range(STEPS):
    progress = max(step / STEPS, (time.perf_counter() - start) / TIME_BUDGET)
    if progress >= 1.0:
        break
    train_one_step()
"""

BUDGET_WHILE = """
from time import monotonic
deadline = monotonic() + 60
while monotonic() < deadline:
    train_one_step()
"""

BUDGET_ACROSS_CELLS = ["import time\nt0 = time.time()", "for batch in data:\n    if time.time() - t0 > 80:\n        break"]

TIMING_ONLY = """
import time
start = time.perf_counter()
for step in range(STEPS):
    train_one_step()
    if step % 100 == 0:
        print(step, time.perf_counter() - start)
seconds = time.perf_counter() - start
print(f"{STEPS / seconds:.0f} steps per second")
"""


@pytest.mark.parametrize("sources", [[BUDGET_LOOP], [BUDGET_WHILE], BUDGET_ACROSS_CELLS],
                         ids=["break-on-progress", "while-deadline", "across-cells"])
def test_a_time_budget_is_found(sources):
    assert time_budgets(sources)


def test_timing_a_run_is_not_a_budget():
    assert time_budgets([TIMING_ONLY]) == []


def test_a_claim_cell_must_assert():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1 + 1)", metadata={"tags": ["claim"]}),
                nbformat.v4.new_code_cell("assert 1 + 1 == 2", metadata={"tags": ["claim", "remove-cell"]}),
                nbformat.v4.new_code_cell("np.testing.assert_allclose(x, y)", metadata={"tags": ["claim"]}),
                nbformat.v4.new_code_cell("assert f(x)", metadata={"tags": ["claim"], "nbgrader": {"grade": True}}),
                nbformat.v4.new_code_cell("assert x", metadata={"tags": []})]
    assert claim_cells(nb) == [1, 2]
