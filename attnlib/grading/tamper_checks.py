"""Catch a submission that tampers with what the hidden tests rely on (runs in the kernel).

This module is imported *inside the learner's kernel*: :mod:`.execute` calls its
functions there, between cells, and compares what they return.

The hidden tests run in the same Python process as the submission, so a
submission could rebind the functions they check with
(``np.testing.assert_allclose = lambda *a, **k: None``), the reference they
compare with (``attnlib.softmax``), or the machinery that reports a failing
check (IPython's ``showtraceback``), and pass every test. The grader, outside
the kernel, defends in three ways; the functions of this module are what it
calls inside the kernel:

1. ``start()``, before the notebook runs, imports the trusted modules and
   returns a *fingerprint*: the identity of every object in their namespaces,
   of the code and default arguments of every Python function there, of the
   IPython and kernel methods that run a cell and report its errors, and of
   the cell transformers. The grader keeps it; ``fingerprint()`` before and
   after every test cell must match it.
2. ``watch()`` installs a profile hook for the duration of a test cell: at
   every call made by the test's own code, the checking functions must still
   be the originals (a submission's function could swap them while the test
   runs and put them back before it ends). ``unwatch()`` returns what it saw.
3. ``canary()``, after the last cell: the checking functions must still reject
   a wrong answer (and the grader checks that an error still reaches it).

A difference means tampering: the grader scores the notebook 0 and says what
changed. This is a tripwire, not a wall: code that rewrites the interpreter's
memory (ctypes) can fool any check made inside the same process; the
autograded notebook keeps the evidence for the instructor. The hidden checks do
not rely on it: :mod:`.verdicts` decides them in the grader's process, from the
results :mod:`.probe` publishes; what this module finds explains what happened.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import types

from IPython import get_ipython

TRUSTED_MODULES = ("builtins", "math", "numpy", "numpy.testing", "torch", "torch.testing",
                   "attnlib")
TRUSTED_CLASSES = (("torch", "Tensor"),)

# What a test calls to decide pass or fail, watched at every call during a test cell
# (with attnlib's public functions, the references the tests compare with).
CHECKS = {
    "numpy.testing": ("assert_allclose", "assert_array_equal", "assert_array_almost_equal",
                      "assert_equal", "assert_almost_equal", "assert_array_less"),
    "numpy": ("allclose", "isclose", "array_equal", "testing"),
    "torch": ("allclose", "isclose", "equal", "testing"),
    "torch.testing": ("assert_close",),
    "math": ("isclose",),
    "builtins": ("isinstance", "len", "all", "any", "abs", "__import__"),
}

# IPython and ipykernel objects on the path from a cell's code to its error message.
SHELL_PARTS = ("", "kernel", "kernel.session", "compile", "input_transformer_manager",
               "displayhook", "display_pub", "InteractiveTB")
TRANSFORMERS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")

_modules: list[str] = []    # the trusted modules, by name (fixed by start())
_watched: list[tuple] = []  # (module, attribute, namespace, its package, original, its parts)
_violations: set[str] = set()
_test = types.SimpleNamespace(file=None)  # the file name of the test cell being watched


def _unwrap(obj):
    """The Python function behind a numpy dispatcher such as ``np.allclose``."""
    if type(obj).__name__ == "_ArrayFunctionDispatcher":
        return obj._implementation
    return obj


def _function_parts(obj) -> tuple:
    """The mutable parts of a Python function: its code and its default arguments."""
    obj = _unwrap(obj)
    if isinstance(obj, types.FunctionType):
        return obj.__code__, obj.__defaults__, obj.__kwdefaults__
    return ()


def _package_dir(module: str) -> str | None:
    """The folder of the top-level package of ``module`` (where its own code lives)."""
    file = getattr(sys.modules.get(module.partition(".")[0]), "__file__", None)
    return os.path.dirname(file) + os.sep if file else None


def _resolve(obj, home: str | None):
    """``obj``, seen through wrappers that its own library (in ``home``) put around
    it: torch, for one, rebinds ``torch.manual_seed`` to a wrapper of itself when
    torch._dynamo loads. A wrapper written anywhere else is a change."""
    while (home and isinstance(obj, types.FunctionType) and hasattr(obj, "__wrapped__")
           and obj.__code__.co_filename.startswith(home)):
        obj = obj.__wrapped__
    return obj


def _token(obj, home: str | None = None) -> str:
    obj = _resolve(obj, home)
    return ":".join(str(id(part)) for part in (obj, *_function_parts(obj)))


def _trusted_modules() -> list[str]:
    """The modules the hidden tests trust: the trusted modules, attnlib's modules,
    and the modules the checking functions are written in."""
    names = []
    for name in TRUSTED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # torch is optional for this check
            continue
        names.append(name)
    names += [name for name in list(sys.modules) if name.startswith("attnlib.")]
    for module, attributes in CHECKS.items():
        space = vars(sys.modules[module]) if module in names else {}
        for attribute in attributes:
            function = _unwrap(space.get(attribute))
            if isinstance(function, types.FunctionType):
                names.append(function.__globals__["__name__"])
    return list(dict.fromkeys(names))


def _shell_objects() -> dict[str, object]:
    shell = get_ipython()
    objects = {}
    for path in SHELL_PARTS:
        obj = shell
        for attr in filter(None, path.split(".")):
            obj = getattr(obj, attr, None)
        if obj is not None:
            objects["shell" + ("." + path if path else "")] = obj
    return objects


def _fingerprint() -> dict[str, dict[str, str]]:
    """Tokens of what the tests trust: ``modules`` (whose namespaces may grow, as
    submodules load on first use) and ``fixed`` (nothing may be added or removed)."""
    modules, fixed = {}, {}
    for module in _modules:
        modules[f"sys.modules[{module!r}]"] = str(id(sys.modules.get(module)))
        home = _package_dir(module)
        for name, value in list(getattr(sys.modules.get(module), "__dict__", {}).items()):
            if not (name.startswith("__") and name.endswith("__")) or name == "__import__":
                modules[f"{module}.{name}"] = _token(value, home)
    classes = [getattr(sys.modules.get(m), c, None) for m, c in TRUSTED_CLASSES]
    for label, obj in _shell_objects().items():
        classes += [c for c in type(obj).__mro__ if c is not object]
        for name, value in list(getattr(obj, "__dict__", {}).items()):
            if callable(value):  # an instance attribute that hides a method
                fixed[f"{label}.{name}"] = _token(value)
        if label == "shell":
            for name in TRANSFORMERS:
                fixed[f"shell.{name}"] = ":".join(str(id(t)) for t in getattr(obj, name, ()))
    for cls in filter(None, classes):
        for name, value in list(vars(cls).items()):
            if callable(value) or isinstance(value, (staticmethod, classmethod, property)):
                fixed[f"{cls.__module__}.{cls.__qualname__}.{name}"] = _token(value)
    fixed["sys.gettrace()"] = str(id(sys.gettrace()))
    fixed["sys.excepthook"] = _token(sys.excepthook)
    return {"modules": modules, "fixed": fixed}


def start() -> str:
    """Import what the tests trust, remember the checking functions; the fingerprint as JSON."""
    _modules[:] = _trusted_modules()
    _watched.clear()
    spaces = {name: vars(sys.modules[name]) for name in _modules}
    names = dict(CHECKS, attnlib=tuple(spaces.get("attnlib", {}).get("__all__", ())))
    for module, attributes in names.items():
        space = spaces.get(module, {})
        home = _package_dir(module)
        for name in attributes:
            if name in space:
                original = _resolve(space[name], home)
                _watched.append((module, name, space, home, original, _function_parts(original)))
    return fingerprint()


def fingerprint() -> str:
    """The current fingerprint, as JSON (see the module's docstring)."""
    return json.dumps(_fingerprint())


def _check_watched(frame, event, arg) -> None:
    """The profile hook of ``watch``: at every call made by the test's own code, the
    checks must be the originals; nothing may replace this hook."""
    if event == "c_call" and arg in (sys.setprofile, sys.settrace) \
            and frame.f_globals is not globals():
        _violations.add(f"sys.{arg.__name__}() was called")
    caller = frame if event == "c_call" else frame.f_back if event == "call" else None
    if caller is None or caller.f_code.co_filename != _test.file:
        return
    for module, name, space, home, original, parts in _watched:
        current = space.get(name)
        if current is not original and _resolve(current, home) is not original \
                or _function_parts(original) != parts:
            _violations.add(f"{module}.{name} was replaced")


def watch(test_source: str) -> str:
    """Watch the checking functions while the test cell ``test_source`` runs, until
    ``unwatch``."""
    shell = get_ipython()  # the file name the kernel will compile the cell under
    _test.file = shell.compile.get_code_name(test_source, test_source, shell.execution_count)
    _violations.clear()
    sys.setprofile(_check_watched)
    return ""


def unwatch() -> str:
    """Stop watching; what was seen, as a JSON list of sentences."""
    if sys.getprofile() is not _check_watched:
        _violations.add("the grader's profile hook was removed")
    sys.setprofile(None)
    return json.dumps(sorted(_violations))


def _raises(check) -> bool:
    try:
        check()
    except Exception:
        return True
    return False


def canary() -> str:
    """The checking functions that accept a wrong answer, as a JSON list of sentences."""
    import math

    import numpy as np
    ok = {
        "numpy.testing.assert_allclose": _raises(lambda: np.testing.assert_allclose(1.0, 2.0)),
        "numpy.testing.assert_array_equal": _raises(lambda: np.testing.assert_array_equal(1, 2)),
        "numpy.allclose": not np.allclose(1.0, 2.0),
        "numpy.isclose": not np.isclose(1.0, 2.0),
        "math.isclose": not math.isclose(1.0, 2.0),
        "isinstance": not isinstance(1.0, str),
    }
    if "torch" in sys.modules:  # (torch.testing.assert_close is left out: its first failure
        import torch            # imports torch.distributed, a second of work)
        ok["torch.allclose"] = not torch.allclose(torch.tensor(1.0), torch.tensor(2.0))
    return json.dumps(sorted(f"{name} accepts a wrong answer" for name, fine in ok.items()
                             if not fine))


# -- grader side ------------------------------------------------------------------------

def call(function: str, *args) -> str:
    """The expression that calls ``function(*args)`` of this module in the kernel."""
    return f"__import__({__name__!r}, fromlist=['_']).{function}({', '.join(map(repr, args))})"


def changes(before: dict, after: dict) -> list[str]:
    """What the submission changed between two fingerprints, as sentences."""
    found = [f"{name} was changed" for part in ("modules", "fixed")
             for name, token in before[part].items() if after[part].get(name, token) != token]
    found += [f"{name} was removed" for part in ("modules", "fixed")
              for name in before[part] if name not in after[part]]
    found += [f"{name} was added" for name in after["fixed"] if name not in before["fixed"]]
    return found
