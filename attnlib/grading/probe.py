"""Call a learner's function on an exercise's inputs and emit the results (runs in the kernel).

This module is imported *inside the learner's kernel* by the hidden part of a test
cell, ``probe.run("stable_softmax", stable_softmax, seed=...)``. It decides
nothing: it builds the exercise's inputs from the seed, calls the learner's
function on each, and publishes what came back as plain data, a display output
of type :data:`MIME`. The grader (:mod:`.verdicts`, in its own process) rebuilds
the same inputs, computes the references itself and writes the verdict.

While the learner's function runs, the library functions the exercise exists to
teach are replaced by tripwires (see :mod:`.exercises`): a Python function gets the
code of a tripwire (so every reference to the function object, however it was
taken, calls the tripwire), and a torch operator raises at torch's dispatcher,
whichever name reached it (``torch.softmax``, ``Tensor.softmax``,
``torch.ops.aten._softmax``, ...). A tripwire computes nothing, so a call of it
gives the learner no result to return; its name is part of the emitted data.

Emitted data: ``{"exercise", "seed", "results": [...], "called": [...]}``; a result is
``{"returned": value}`` or ``{"raised": [class names of its MRO], "message": str}``,
and a value is ``{"kind": ..., ...}``: ``ndarray``/``tensor`` (``npy``: base64 of an
``.npy`` file, written without pickle), ``int``/``float`` (``value`` as text),
``bool``, ``str``, ``none``, ``tuple``/``list`` (``items``), or ``other`` (``type``).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import sys
import warnings

import numpy as np

MIME = "application/vnd.attnlib.probe+json"
MESSAGE_CHARS = 300  # of an exception's message
KERNEL_KEYS = ("CPU", "CompositeExplicitAutograd", "CompositeImplicitAutograd")


class Delegation(Exception):
    """A tripwire was hit: the learner's function called a function it should write.

    It notes itself when it is made, so a ``try``/``except`` around the call hides nothing."""

    def __init__(self, key):
        super().__init__(key)
        _called.append(key)


_called: list = []  # the keys of the tripwires hit: (file, qualified name) or "aten.<op>"


def _tripwire(*args, **kwargs):  # its code replaces a forbidden function's code
    frame = __import__("sys")._getframe(0)
    raise __import__("attnlib.grading.probe", fromlist=["_"]).Delegation(
        (frame.f_code.co_filename, frame.f_code.co_qualname))


def resolve(target: str):
    """The object named by ``target``, ``"module:attribute.path"`` (``attnlib.softmax:_shifted_numpy``)."""
    module, _, path = target.partition(":")
    obj = importlib.import_module(module)
    for attribute in path.split("."):
        obj = getattr(obj, attribute)
    return obj


@contextlib.contextmanager
def tripwires(python: dict[str, str], operators: dict[str, str]):
    """While the block runs, the Python functions of ``python`` (target -> library name)
    and the torch operators of ``operators`` (``"aten._softmax"`` -> library name) are
    tripwires; yields the list of the library names hit (filled in at the end)."""
    names = dict(operators)
    saved = []
    hit: list[str] = []
    _called.clear()
    try:
        for target, name in python.items():
            function = resolve(target)
            code = function.__code__
            names[(code.co_filename, code.co_qualname)] = name
            saved.append((function, code))
            function.__code__ = _tripwire.__code__.replace(
                co_filename=code.co_filename, co_name=code.co_name, co_qualname=code.co_qualname)
        with _denied(operators):
            yield hit
    finally:
        for function, code in saved:
            function.__code__ = code
        hit += sorted({names[key] for key in _called if key in names})


@contextlib.contextmanager
def _denied(operators: dict[str, str]):
    """While the block runs, the torch operators of ``operators`` have a kernel that
    raises ``Delegation`` instead of computing: registered at torch's dispatcher (for
    the CPU, or the composite kernel of an operator made of others), it holds
    whichever Python name reached the operator."""
    if not operators:
        yield
        return
    import torch

    def deny(key):
        def kernel(*args, **kwargs):
            raise Delegation(key)
        return kernel

    library = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():  # "overriding a previously registered kernel"
            warnings.simplefilter("ignore")
            for key in operators:
                op = key.removeprefix("aten.")
                where = next(k for k in KERNEL_KEYS  # the kernel torch would run on CPU
                             if torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{op}", k))
                library.impl(op, deny(key), where)
        yield
    finally:
        library._destroy()


def encode(value, depth: int = 0) -> dict:
    """``value`` as plain data (see the module docstring)."""
    if depth > 4:
        return {"kind": "other", "type": "nesting deeper than 4"}
    if isinstance(value, np.ndarray) or _is_tensor(value):
        kind = "tensor" if _is_tensor(value) else "ndarray"
        array = value.detach().cpu().resolve_conj().numpy() if kind == "tensor" else value
        buffer = io.BytesIO()
        np.save(buffer, np.array(array, copy=True, subok=False), allow_pickle=False)
        return {"kind": kind, "npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"kind": "int", "value": int.__repr__(int(value))}
    if isinstance(value, (float, np.floating)):
        return {"kind": "float", "value": float.__repr__(float(value))}
    if isinstance(value, (tuple, list)):
        return {"kind": type(value).__name__ if type(value) in (tuple, list) else "other",
                "items": [encode(item, depth + 1) for item in value]}
    if value is None:
        return {"kind": "none"}
    if isinstance(value, str):
        return {"kind": "str", "value": str.__str__(value)[:MESSAGE_CHARS]}
    return {"kind": "other", "type": type(value).__name__}


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def outcome(function, exercise, case) -> dict:
    """What ``exercise.call(function, case)`` returned or raised, as plain data."""
    try:
        value = exercise.call(function, case)
    except Exception as err:  # any failure of the learner's code is a result
        return {"raised": [c.__name__ for c in type(err).__mro__],
                "message": str(err)[:MESSAGE_CHARS]}
    try:
        return {"returned": encode(value)}
    except Exception as err:
        return {"returned": {"kind": "other", "type": f"{type(value).__name__} ({err})"}}


def results(name: str, function, seed: int) -> dict:
    """Call ``function`` on every input of the exercise ``name`` built from ``seed``,
    with the functions it teaches replaced by tripwires: the data to publish."""
    from .exercises import EXERCISES, tripwire_targets

    exercise = EXERCISES[name]
    cases = exercise.cases(np.random.default_rng(seed))
    found = []
    with tripwires(*tripwire_targets(exercise)) as called:
        for case in cases:
            found.append(outcome(function, exercise, case))
    return {"exercise": name, "seed": seed, "results": found, "called": called}


def run(name: str, function, seed: int) -> None:
    """Publish the :func:`results` of ``function`` on the exercise ``name`` as a display
    output of type :data:`MIME`: the grader reads it from the cell."""
    from IPython.display import publish_display_data

    publish_display_data({MIME: results(name, function, seed)})
