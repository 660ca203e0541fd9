"""Verdicts decided in the grader's process, from the data a hidden check publishes.

The fixtures (tests/grading/fixtures/verdict_*.ipynb, and the one-cell submission
one_cell/01_softmax.ipynb) are chapter 01 submissions, each with one attack on the
verdict path; its first cell says which. None earns a point its answers do not
deserve: all their answers are wrong, or the work of a library function the
exercise exists to teach. The unit tests below feed the grader malformed data
directly.
"""

import base64
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from traitlets.config import Config

import attnlib
from attnlib.grading import probe
from attnlib.grading.exercises import EXERCISES, LIBRARY, tripwire_targets
from attnlib.grading.grade_one import grade
from attnlib.grading.verdicts import DecideVerdicts, Unreadable, probe_call, verdict
from tests.grading.helpers import FIXTURES

PICKLE_MARK = Path("/tmp/attnlib-verdict-pickle-ran")

# fixture -> a phrase the message of every exercise must contain (None: any failure)
ATTACKS = {
    "one_cell/01_softmax": None,
    "helper_rebinding": "is wrong",
    "ctypes_ndarray": None,
    "agreeing_ndarray": "is wrong",
    "torch_function_tensor": "should return a numpy array",
    "shadowed_builtins": None,
    "int_subclass": "should return a numpy array",
    "patched_reference": None,
    "delegate_attnlib": "calls",
    "delegate_torch": "calls torch",
    "post_run_cell_clears_errors": None,
    "displayhook_credit": None,
    "forged_results": None,
    "extra_results": "more than one set of results",
    "fake_probe_module": None,
    "pickled_results": "could not be read",
    "oversized_results": None,
    "catch_the_tripwire": None,
    "copied_functions": None,
    "restored_code": None,
    "mutated_inputs": None,
    "unreadable_values": None,
    "escape_with_base_exception": None,
    "dispatch_mode_escape": None,
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_on_the_verdict_earns_nothing(name):
    PICKLE_MARK.unlink(missing_ok=True)
    report = grade(FIXTURES / f"{name if '/' in name else 'verdict_' + name}.ipynb")
    assert report.chapter == "01_softmax" and report.max_score == 10
    assert report.score == 0, report.table()
    assert all(e.message for e in report.exercises), report.table()
    if ATTACKS[name]:
        assert all(ATTACKS[name] in e.message for e in report.exercises), report.table()
    assert not PICKLE_MARK.exists(), "the grader unpickled data from the kernel"


# -- the grader's side, without a kernel ------------------------------------------------

def stable_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def published(function, name="stable_softmax", seed=3):
    """What the probe publishes for ``function``, through JSON as in a notebook."""
    return json.loads(json.dumps(probe.results(name, function, seed)))


def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_a_right_answer_passes_and_a_wrong_one_names_the_input():
    exercise = EXERCISES["stable_softmax"]
    assert verdict(exercise, 3, published(stable_softmax)) is None
    message = verdict(exercise, 3, published(lambda x, axis=-1: np.ones_like(x)))
    assert message.startswith("stable_softmax(an array of shape (3,)) is wrong")


def split_heads_np(x, n_heads):
    b, length, e = x.shape
    if e % n_heads:
        raise ValueError(f"E={e} is not divisible by n_heads={n_heads}")
    return x.reshape(b, length, n_heads, e // n_heads).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("function, problem", [
    (split_heads_np, None),
    (lambda x, n_heads: split_heads_np(x, n_heads if x.shape[-1] % n_heads == 0 else 1),
     "should raise a ValueError, but returned"),
    (lambda x, n_heads: split_heads_np(x, n_heads) if x.shape[-1] % n_heads == 0 else x.reshape(-1, 3),
     "should raise a ValueError that names n_heads"),
    (lambda x, n_heads: split_heads_np(x, n_heads) if x.shape[-1] % n_heads == 0 else {}[n_heads],
     "should raise a ValueError, raised KeyError"),
])
def test_a_case_that_must_raise_is_decided_by_the_error_and_its_message(function, problem):
    message = verdict(EXERCISES["split_heads_np"], 7, published(function, "split_heads_np", 7))
    assert message is None if problem is None else problem in message, message


@pytest.mark.parametrize("delegate, named", [
    (lambda x, axis=-1: attnlib.softmax(x, axis=axis), "attnlib.softmax"),
    (lambda x, axis=-1: np.exp(attnlib.log_softmax(x, axis=axis)), "attnlib.log_softmax"),
    (lambda x, axis=-1: torch.softmax(torch.from_numpy(x), axis).numpy(), "torch.softmax"),
    (lambda x, axis=-1: torch.from_numpy(x).softmax(axis).numpy(), "torch.softmax"),
    (lambda x, axis=-1: torch.ops.aten._softmax(torch.from_numpy(x), axis, False).numpy(),
     "torch.softmax"),
    (lambda x, axis=-1: torch.nn.Softmax(axis)(torch.from_numpy(x)).numpy(), "torch.softmax"),
])
def test_delegation_is_named_and_the_library_is_put_back(delegate, named):
    message = verdict(EXERCISES["stable_softmax"], 3, published(delegate))
    assert message.startswith(f"stable_softmax calls {named}: this exercise is about writing")
    np.testing.assert_allclose(attnlib.softmax(np.array([0.0, 0.0])), [0.5, 0.5])
    np.testing.assert_allclose(torch.softmax(torch.zeros(2), 0), [0.5, 0.5])


def test_other_library_functions_stay_allowed():
    def with_helpers(x, axis=-1):
        e = torch.exp(torch.from_numpy(x) - torch.amax(torch.from_numpy(x), axis, keepdim=True))
        return (e / e.sum(axis, keepdim=True)).numpy()
    assert verdict(EXERCISES["stable_softmax"], 3, published(with_helpers)) is None


def good_data():
    return published(stable_softmax)


@pytest.mark.parametrize("spoil, reason", [
    (lambda d: d.update(exercise="log_softmax_lse"), "not the results of the exercise"),
    (lambda d: d.update(seed=4), "not the results of the exercise"),
    (lambda d: d.pop("called"), "not in the probe's format"),
    (lambda d: d["results"].pop(), "results for"),
    (lambda d: d["results"][0].update(returned={"kind": "ndarray", "npy": "%%%"}), "could not be read"),
    (lambda d: d["results"][0].update(
        returned={"kind": "ndarray", "npy": npy(np.array([None]), allow_pickle=True)}), "could not be read"),
    (lambda d: d["results"][0].update(
        returned={"kind": "ndarray", "npy": npy(np.zeros(3, complex))}), "not a number type"),
    (lambda d: d["results"][0].update(returned={"kind": "float", "value": "0.5" * 300}), "format"),
    (lambda d: d["results"][0].update(returned=[1, 2]), "format"),
    (lambda d: d["results"].__setitem__(0, "yes"), "neither a value nor an error"),
])
def test_malformed_data_is_a_failure_that_says_why(spoil, reason):
    data = good_data()
    spoil(data)
    with pytest.raises(Unreadable, match=reason):
        verdict(EXERCISES["stable_softmax"], 3, data)


def test_the_seed_is_read_from_the_instructors_cell():
    source = 'x = 1\nfrom attnlib.grading import probe\n\nprobe.run("stable_softmax", f, seed=42)\n'
    assert probe_call(source) == ("stable_softmax", 42)
    assert probe_call("assert True") is None


def test_every_library_function_an_exercise_teaches_can_be_tripped():
    for name, targets in LIBRARY.items():
        for target in targets:
            if target.startswith("aten."):
                assert hasattr(torch.ops.aten, target.removeprefix("aten.")), target
            else:
                function = probe.resolve(target)
                assert not function.__code__.co_freevars, f"{target} is a closure"
    for exercise in EXERCISES.values():
        assert all(name in LIBRARY for name in exercise.teaches), exercise.name
        python, operators = tripwire_targets(exercise)
        with probe.tripwires(python, operators) as called:
            pass
        assert called == []


def graded_cell(*outputs):
    """A test cell of stable_softmax as the kernel left it, with ``outputs``."""
    source = 'assert True\n### BEGIN HIDDEN TESTS\nprobe.run("stable_softmax", stable_softmax, seed=3)\n'
    cell = nbformat.v4.new_code_cell(source, outputs=list(outputs))
    cell.metadata.nbgrader = {"grade": True, "solution": False, "grade_id": "stable_softmax", "points": 2}
    return cell


def decided(cell, config=None):
    step = DecideVerdicts(config=config or Config())
    nb = nbformat.v4.new_notebook(cells=[cell])
    return step.preprocess(nb, {})[0].cells[0]


def results_output(function):
    return nbformat.v4.new_output("display_data", data={probe.MIME: published(function)})


def test_the_verdict_replaces_what_the_kernel_left():
    shown = nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)
    cell = decided(graded_cell(shown, results_output(stable_softmax)))
    assert [o.output_type for o in cell.outputs] == ["display_data"]  # no partial credit, no data
    assert probe.MIME not in cell.outputs[0].data
    cell = decided(graded_cell(shown, results_output(lambda x, axis=-1: x)))
    assert cell.outputs[0].output_type == "error" and "is wrong" in cell.outputs[0].evalue
    cell = decided(graded_cell())
    assert "did not report its results" in cell.outputs[0].evalue


def test_an_error_before_the_hidden_check_comes_first():
    shown = nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)
    error = nbformat.v4.new_output("error", ename="AssertionError", evalue="visible", traceback=[])
    cell = decided(graded_cell(shown, error))
    assert [o.output_type for o in cell.outputs] == ["error", "display_data"]
    assert cell.outputs[0].evalue == "visible"


def test_a_class_replay_keeps_the_verdicts_its_workers_wrote():
    config = Config()
    config.ReplayExecution.results = "/somewhere"
    cell = graded_cell()
    assert decided(cell, config).outputs == []
