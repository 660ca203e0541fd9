"""Decide every hidden check in the grader's process: ``nbgrader_config.py`` runs
:class:`DecideVerdicts` right after the submission was executed.

The hidden part of a test cell is one call, ``probe.run("<exercise>", <function>,
seed=<n>)``: in the kernel, :mod:`.probe` calls the learner's function on the
exercise's inputs and publishes what came back as plain data. Here, in a process
the submission never touches, the grader reads that data defensively (a size cap,
no pickle, numeric arrays only: anything else is a failure that says why), builds
the same inputs from the seed written in the instructor's cell (which the
submission cannot change, nor see before the call), computes the references
itself (:mod:`.exercises`) and compares.

The verdict overrides whatever the kernel left in the cell: the published data
is removed, an ``execute_result`` becomes a plain display (nbgrader would count a
number shown before an error as partial credit), and a failed check puts an
error output with its message first, so nbgrader gives the cell 0 points. A check passes only when its
data arrived, complete and right, and no function the exercise teaches was called.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json

import nbformat
import numpy as np
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from .execute import is_test
from .exercises import EXERCISES, Case, Exercise
from .probe import MIME

MAX_DATA = 8 * 2**20       # characters of published data a test cell may carry
ARRAY_KINDS = "biuf"       # bool, int, unsigned, float: the only array dtypes read


class Unreadable(Exception):
    """The data published by a test cell is missing or malformed."""


def probe_call(source: str) -> tuple[str, int] | None:
    """``(exercise, seed)`` of the ``probe.run`` call in a test cell's ``source``, if any."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "run" and ast.unparse(node.func.value).endswith("probe")
                and node.args and isinstance(node.args[0], ast.Constant)):
            seeds = [k.value for k in node.keywords if k.arg == "seed"]
            if seeds and isinstance(seeds[0], ast.Constant) and isinstance(seeds[0].value, int):
                return node.args[0].value, seeds[0].value
    return None


def read_value(data, depth: int = 0):
    """A value published by the probe, as ``(kind, python value)``; raises ``Unreadable``."""
    if not isinstance(data, dict) or depth > 5:
        raise Unreadable("a value is not in the probe's format")
    kind = data.get("kind")
    if kind in ("ndarray", "tensor"):
        try:
            raw = base64.b64decode(data.get("npy", ""), validate=True)
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except (binascii.Error, ValueError, TypeError, OSError, EOFError) as err:
            raise Unreadable(f"an array could not be read ({type(err).__name__})") from None
        if array.dtype.kind not in ARRAY_KINDS:
            raise Unreadable(f"an array has the dtype {array.dtype}, not a number type")
        return kind, array
    if kind == "bool" and isinstance(data.get("value"), bool):
        return kind, data["value"]
    if kind in ("int", "float") and isinstance(data.get("value"), str) \
            and len(data["value"]) < 400:
        try:
            return kind, (int if kind == "int" else float)(data["value"])
        except ValueError:
            raise Unreadable(f"a number could not be read: {data['value'][:40]!r}") from None
    if kind in ("tuple", "list") and isinstance(data.get("items"), list):
        return kind, [read_value(item, depth + 1) for item in data["items"]]
    if kind == "none":
        return kind, None
    if kind in ("str", "other"):
        return kind, str(data.get("value", data.get("type", "")))[:300]
    raise Unreadable("a value is not in the probe's format")


def read_results(data, exercise: str, seed: int) -> tuple[list, list[str]]:
    """The results and the tripwires hit of a probe's ``data``; raises ``Unreadable``."""
    if not isinstance(data, dict) or data.get("exercise") != exercise or data.get("seed") != seed:
        raise Unreadable(f"they are not the results of the exercise {exercise}")
    results, called = data.get("results"), data.get("called")
    if not isinstance(results, list) or not isinstance(called, list) \
            or not all(isinstance(c, str) for c in called):
        raise Unreadable("they are not in the probe's format")
    read = []
    for result in results:
        if isinstance(result, dict) and "returned" in result:
            read.append(read_value(result["returned"]))
        elif isinstance(result, dict) and isinstance(result.get("raised"), list):
            read.append(("raised", ([str(n) for n in result["raised"]],
                                    str(result.get("message", ""))[:300])))
        else:
            raise Unreadable("a result is neither a value nor an error")
    return read, called


def describe(value) -> str:
    """A short description of an argument, for messages: an array by its shape only,
    so that feedback never shows the inputs of a hidden check."""
    if isinstance(value, np.ndarray) or type(value).__name__ == "Tensor":
        dtype = str(value.dtype).replace("torch.", "")
        return f"an array of shape {tuple(value.shape)}" + ("" if dtype == "float64" else f" ({dtype})")
    if callable(value):
        return f"a {type(value).__name__}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        return f"a list of {len(value)} arrays"
    return repr(value)


def signature(exercise: Exercise, case: Case) -> str:
    """``name(x of shape (2, 3), axis=0)``, or the case's own label, for messages."""
    args = [describe(a) for a in case.args] + [f"{k}={describe(v)}" for k, v in case.kwargs.items()]
    return f"{exercise.name}({', '.join(args)})" + (f" ({case.label})" if case.label else "")


def compare(got: tuple, expected, rtol: float, atol: float) -> str | None:
    """What is wrong with ``got`` (``(kind, value)``) given ``expected``, or ``None``."""
    kind, value = got
    if isinstance(expected, np.ndarray) or type(expected).__name__ == "Tensor":
        want = "tensor" if type(expected).__name__ == "Tensor" else "ndarray"
        if want == "ndarray" and expected.ndim == 0 and kind in ("int", "float"):
            kind, value = want, np.asarray(value)  # a numpy scalar is a 0-d array
        if kind != want:
            return f"should return a {'torch tensor' if want == 'tensor' else 'numpy array'}, got {kind}"
        expected = np.asarray(expected.detach() if want == "tensor" else expected)
        if value.shape != expected.shape:
            return f"should have the shape {expected.shape}, got {value.shape}"
        if expected.dtype.kind in "iu" and value.dtype.kind not in "iu":
            return f"should be an integer array, got the dtype {value.dtype}"
        if expected.dtype == bool:
            if value.dtype != bool:
                return f"should be a boolean array, got the dtype {value.dtype}"
            return None if np.array_equal(value, expected) else "is wrong"
        if np.isnan(value).any() and not np.isnan(expected).any():
            return "the result contains NaN"
        if not np.allclose(value, expected, rtol=rtol, atol=atol, equal_nan=True):
            error = np.abs(value.astype(np.float64) - expected)
            return (f"is wrong: it differs from the reference by up to {np.nanmax(error):.3g} "
                    f"(allowed: {atol:g} + {rtol:g} x |reference|)")
        return None
    if isinstance(expected, (bool, np.bool_)):
        return None if kind == "bool" and value == bool(expected) else \
            f"should be {bool(expected)}, got {value!r}"
    if isinstance(expected, (int, np.integer)):
        return None if kind == "int" and value == int(expected) else \
            f"should be the int {int(expected)}, got {value!r} ({kind})"
    if isinstance(expected, (float, np.floating)):
        if kind not in ("float", "int") or not np.isclose(value, expected, rtol=rtol, atol=atol):
            return f"should be {float(expected):.6g}, got {value!r}"
        return None
    if isinstance(expected, (tuple, list)):
        if kind not in ("tuple", "list") or len(value) != len(expected):
            return f"should return {len(expected)} values as a {type(expected).__name__}"
        for number, (item, want) in enumerate(zip(value, expected)):
            problem = compare(item, want, rtol, atol)
            if problem:
                return f"value {number}: {problem}"
        return None
    raise TypeError(f"no comparison for a reference of type {type(expected).__name__}")


def raised(case: Case, got: tuple) -> str | None:
    """What is wrong with ``got`` for a case that must raise ``case.raises``, or ``None``."""
    if got[0] != "raised":
        return f"should raise a {case.raises}, but returned"
    names, message = got[1]
    if case.raises not in names:
        return f"should raise a {case.raises}, raised {names[0]}: {message}"
    if case.naming not in message:
        return f"should raise a {case.raises} that names {case.naming}, got: {message}"
    return None


def plain(got: tuple):
    """A read value without its kinds: numbers, arrays and lists of them."""
    kind, value = got
    return [plain(item) for item in value] if kind in ("tuple", "list") else value


def verdict(exercise: Exercise, seed: int, data) -> str | None:
    """Why the hidden check of ``exercise`` failed given the probe's ``data``, or ``None``."""
    results, called = read_results(data, exercise.name, seed)
    if called:
        return (f"{exercise.name} calls {', '.join(called)}: this exercise is about writing "
                f"that yourself, so the check does not accept it" +
                (f" ({exercise.hint})" if exercise.hint else ""))
    cases = exercise.cases(np.random.default_rng(seed))
    if len(results) != len(cases):
        raise Unreadable(f"they hold {len(results)} results for {len(cases)} inputs")
    for case, got in zip(cases, results):
        rtol = exercise.rtol if case.rtol is None else case.rtol
        atol = exercise.atol if case.atol is None else case.atol
        if case.raises:
            problem = raised(case, got)
        elif got[0] == "raised":
            problem = f"raised {got[1][0][0]}: {got[1][1]}"
        elif exercise.reference is not None:
            expected = exercise.reference(*case.args, **case.kwargs, **case.union)
            problem = compare(got, expected, rtol, atol)
        else:
            problem = None
        if problem is None and exercise.check is not None and not case.raises:
            problem = exercise.check(case, plain(got))
        if problem:
            return f"{signature(exercise, case)} {problem}"
    return None


class DecideVerdicts(NbGraderPreprocessor):
    """Decide the hidden check of every test cell from its published data (see the module)."""

    max_data = Integer(MAX_DATA, help="characters of published data a test cell may carry"
                       ).tag(config=True)

    def preprocess(self, nb, resources):
        # A class is graded on workers, each deciding its notebooks' verdicts; one
        # `nbgrader autograde` then replays those notebooks (ReplayExecution of
        # grade_class): already decided, they pass through unchanged.
        if "ReplayExecution" in self.config:
            return nb, resources
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if not is_test(cell):
            return cell, resources
        call = probe_call(cell.source)
        if call is None:  # a test without a hidden check: nbgrader decides as usual
            return cell, resources
        published = [o for o in cell.outputs if MIME in o.get("data", {})]
        kept = [o for o in cell.outputs if MIME not in o.get("data", {})]
        for output in kept:  # a shown value is no partial credit
            if output.output_type == "execute_result":
                output.output_type = "display_data"
                output.pop("execution_count", None)
        errors = [o for o in kept if o.output_type == "error"]
        if not published and errors:  # the cell stopped before its hidden check: its
            kept.remove(errors[0])    # first error says why, and comes first
            kept.insert(0, errors[0])
        cell.outputs = kept
        message = None if errors and not published else self.decide(call, published)
        if message:
            cell.outputs.insert(0, nbformat.v4.new_output(
                "error", ename="AssertionError", evalue=message,
                traceback=[f"\x1b[0;31mAssertionError\x1b[0m: {message}"]))
        return cell, resources

    def decide(self, call: tuple[str, int], published: list) -> str | None:
        """The failure message of a hidden check (``None``: it passed)."""
        name, seed = call
        if not published:
            return "the hidden check did not report its results (did the cell run to its end?)"
        if len(published) > 1:
            return "the hidden check reported more than one set of results"
        data = published[0]["data"][MIME]
        try:
            if len(json.dumps(data)) > self.max_data:
                raise Unreadable(f"they are larger than {self.max_data} characters")
            if name not in EXERCISES:
                raise Unreadable(f"{name} is no known exercise")
            return verdict(EXERCISES[name], seed, data)
        except Unreadable as err:
            return f"the results of the hidden check could not be read: {err}"
        except (TypeError, ValueError, IndexError) as err:  # values of a shape no check expects
            return f"the results of the hidden check could not be compared: {err}"
