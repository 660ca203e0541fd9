"""Run a submission for grading: nbgrader's ``Execute`` preprocessor, hardened.

``GradingExecute`` takes the place of nbgrader's ``Execute`` in ``nbgrader
autograde`` (see ``nbgrader_config.py``), so ``python -m attnlib grade``, the
class grader and plain nbgrader commands all run submissions the same way:

- the kernel runs in the sandbox of :mod:`attnlib.grading.sandbox`, with its memory,
  CPU-time, process and scratch-folder limits, in an empty scratch folder of its
  own (deleted afterwards);
- a cell that runs past ``timeout`` seconds is interrupted; one that will not
  stop is killed with its kernel;
- the whole notebook may run ``notebook_timeout`` seconds: the cell running then
  is stopped, and it and every test after it get an error (so they score 0) and
  a note asking for manual grading;
- a kernel that dies (``os._exit``, a signal, the CPU-time limit) is reported
  in the cell that killed it, a new kernel runs the rest of the notebook, and
  the points earned before stay;
- a cell keeps at most ``output_limit`` characters of printed output, and
  ``display_limit`` characters of display outputs (figures, HTML, results);
- :mod:`attnlib.grading.tamper_checks` watches for tampering with the checks; if it finds
  any, every test of the notebook gets an error that says what changed, so it
  scores 0;
- a test passes when it raises no error: what it writes to stderr (a warning
  from a correct solution, say) stays in its output but costs no points.

Every finding is an error output of the cell concerned, its ``ename`` an
:class:`~attnlib.grading.limits.Outcome`, and is listed in the cell's metadata,
so the grade, the feedback and ``python -m attnlib grade`` all tell the same
story. The limits' defaults are those of :mod:`attnlib.grading.limits`.
"""

from __future__ import annotations

import ast
import atexit
import json
import math
import signal
import tempfile
from queue import Empty
from time import monotonic

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool, Integer, Unicode

from . import limits, tamper_checks
from .limits import Outcome, record
from .sandbox import Limits, SandboxedKernelManager, parse_size, why_not

RESTARTED = ("A new kernel ran the rest of the notebook without what earlier cells had "
             "defined, so later exercises may fail for that reason alone: needs manual grading.")


class KernelStartError(RuntimeError):
    """The grading kernel could not be started."""


class IntegrityCheckFailed(Exception):
    """The kernel did not answer an integrity check as it should."""


def is_test(cell) -> bool:
    """An autograded test cell (nbgrader "grade" code cell that is not a solution)."""
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def error_output(outcome: Outcome, evalue: str) -> nbformat.NotebookNode:
    """The error output that reports ``outcome`` in a cell."""
    ename = outcome.value
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


def _chars(data: dict) -> int:
    """Characters of the data (mime type -> content) of a display output."""
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in data.values())


def report(cell, outcome: Outcome, evalue: str) -> None:
    """Add the error output of ``outcome`` to ``cell`` and note it in its metadata."""
    cell.outputs.append(error_output(outcome, evalue))
    record(cell, outcome)


class GradingExecute(Execute):
    """nbgrader's Execute, run in a sandbox, with limits and tamper checks."""

    timeout = Integer(limits.CELL_TIMEOUT, allow_none=True,
                      help="seconds a cell may run before it is interrupted").tag(config=True)
    notebook_timeout = Integer(limits.NOTEBOOK_TIMEOUT,
                               help="seconds the whole notebook may run; the rest is not run"
                               ).tag(config=True)
    memory_limit = Unicode(limits.MEMORY, help="memory the sandbox may use, all its processes "
                           "together, e.g. 4GiB or 512MiB").tag(config=True)
    cpu_time_limit = Integer(limits.CPU_TIME, help="seconds of CPU time the kernel may use in all"
                             ).tag(config=True)
    process_limit = Integer(limits.PROCESSES, help="processes and threads the sandbox may run "
                            "at once").tag(config=True)
    scratch_limit = Unicode(limits.SCRATCH_SIZE, help="what the kernel may write in its scratch "
                            "folder, in all, e.g. 1GiB").tag(config=True)
    sandbox = Bool(limits.SANDBOX, help="run the kernel in bubblewrap where it is available"
                   ).tag(config=True)
    output_limit = Integer(limits.OUTPUT_CHARS, help="characters of printed output kept per cell"
                           ).tag(config=True)
    display_limit = Integer(limits.DISPLAY_CHARS, help="characters of display outputs (figures, "
                            "HTML, results) kept per cell").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.shutdown_kernel = "immediate"  # the sandbox goes with it: no need to wait
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        if why_not(self.sandbox):
            self.log.warning("grading without a sandbox: %s", why_not(self.sandbox))
        self._started, self._manager = False, None
        with tempfile.TemporaryDirectory(prefix="attnlib-kernel-") as work:
            self._work = work
            try:
                run_sync(self._run_notebook)()
            except Exception as err:
                if self._started:
                    raise
                raise KernelStartError(self._start_failure(err)) from None
            finally:  # nbclient leaves this behind when a kernel fails to start
                atexit.unregister(self._cleanup_kernel)
        self.set_widgets_metadata()
        return self.nb, self.resources

    def create_kernel_manager(self):
        limits = Limits(memory=parse_size(self.memory_limit), cpu_time=self.cpu_time_limit,
                        processes=self.process_limit,
                        scratch_size=parse_size(self.scratch_limit, "scratch limit"))
        self.km = self._manager = SandboxedKernelManager(
            work=self._work, limits=limits, kernel_name="python3",
            use_bwrap=why_not(self.sandbox) is None, config=self.config)
        return self.km

    # -- the notebook, cell by cell ---------------------------------------------------

    async def _run_notebook(self) -> None:
        self._tampering: dict[str, str] = {}  # what was found -> when it was first seen
        self._baseline: dict = {"modules": {}, "fixed": {}}
        self._printed: dict[str, int] = {}    # message id -> characters printed
        self._displayed: dict[str, int] = {}  # message id -> characters of display outputs
        self._deadline = monotonic() + self.notebook_timeout
        async with self.async_setup_kernel():
            info = await self.async_wait_for_reply(await ensure_async(self.kc.kernel_info()))
            self.nb.metadata["language_info"] = info["content"]["language_info"]
            self._started = True
            await self._integrity(self._start, "when the kernel started")
            for index, cell in enumerate(self.nb.cells):
                if self._out_of_time():
                    self._not_run(self.nb.cells[index:])
                    break
                await self._run_cell(index, cell)
            if not self._out_of_time():  # (else its kernel may be stuck in the last cell)
                try:
                    await self._integrity(self._canary, "after the last cell")
                except DeadKernelError:  # died after the last cell: the tests ran and were checked
                    pass
        if self._tampering:
            for cell in filter(is_test, self.nb.cells):
                report(cell, Outcome.TAMPERING, self._tampering_note())

    async def _run_cell(self, index: int, cell) -> None:
        test = is_test(cell)
        name = cell.metadata.get("nbgrader", {}).get("grade_id")
        try:
            if test:
                await self._integrity(self._compare, f"before the test {name}")
                await self._integrity(lambda: self._watch(cell.source),
                                      f"before the test {name}")
            await self.async_execute_cell(cell, index,
                                          execution_count=self.code_cells_executed + 1)
            if test:
                await self._integrity(self._unwatch, f"during the test {name}")
                await self._integrity(self._compare, f"after the test {name}")
        except DeadKernelError:
            report(cell, Outcome.KERNEL_DIED, self._death_note())
            await self._restart(cell)
        except CellTimeoutError:
            if self._out_of_time():  # the rest is not run: no new kernel needed
                report(cell, Outcome.NOTEBOOK_TIMEOUT, self._notebook_timeout_note())
                return
            report(cell, Outcome.TIMEOUT, (
                f"this cell ran longer than the {self.timeout} s limit and did not stop when "
                "interrupted, so its kernel was stopped. " + RESTARTED))
            await self._restart(cell)
        if test:  # stderr is not a failure (see the module docstring): keep it as output
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
                    cell.metadata[limits.STDERR_KEY] = True

    def _get_timeout(self, cell) -> int | None:
        """nbclient's time limit of ``cell``: ``timeout``, or what is left of the
        notebook's time if that is less."""
        left = max(1, math.ceil(self._deadline - monotonic()))
        return min(filter(None, [super()._get_timeout(cell), left]))

    def _out_of_time(self) -> bool:
        return monotonic() >= self._deadline

    def _notebook_timeout_note(self) -> str:
        return (f"the notebook ran longer than its {self.notebook_timeout} s limit: the cell "
                "running then was stopped, and the cells after it were not run (their tests "
                "score 0): needs manual grading")

    def _not_run(self, cells) -> None:
        """Give the tests among ``cells``, which the notebook had no time left to run, the
        error that says so (a test without an error would pass)."""
        for cell in filter(is_test, cells):
            report(cell, Outcome.NOTEBOOK_TIMEOUT, self._notebook_timeout_note())

    async def _async_handle_timeout(self, timeout: int, cell=None):
        """nbclient's timeout: the kernel is interrupted and the cell gets the error of
        ``error_on_timeout`` (the cell's limit, or the notebook's); the outcome is noted
        in the cell's metadata as well."""
        if self._out_of_time():
            outcome, note = Outcome.NOTEBOOK_TIMEOUT, self._notebook_timeout_note()
        else:
            outcome = Outcome.TIMEOUT
            note = f"this cell ran longer than the {timeout} s limit and was stopped"
        self.error_on_timeout = dict(error_output(outcome, note))
        reply = await super()._async_handle_timeout(timeout, cell)
        if reply is not None and cell is not None:
            record(cell, outcome)
        return reply

    def _start_failure(self, err: Exception) -> str:
        manager = getattr(self, "_manager", None)  # (nbclient has dropped self.km by now)
        where = " in the bubblewrap sandbox" if manager is not None and manager.use_bwrap else ""
        words = manager.last_words() if manager is not None else ""
        return (f"the grading kernel did not start{where}: {err}"
                + (f"; it said: {words}" if words else "")
                + (". To grade without the sandbox, set c.GradingExecute.sandbox = False in "
                   "nbgrader_config.py" if where else ""))

    def _death_note(self) -> str:
        process = getattr(self.km.provisioner, "process", None)
        code = process.poll() if process is not None else None
        if self.km.use_bwrap and code is not None and code > 128:
            code = 128 - code  # bwrap exits with 128 + the signal that killed the kernel
        if code is None:
            why = "it stopped answering"
        elif code < 0 and -code == signal.SIGXCPU:
            why = f"it used up its CPU time limit ({self.cpu_time_limit} s)"
        elif code < 0:
            why = f"it was killed by signal {signal.Signals(-code).name}"
        else:
            why = f"its process exited with code {code} (os._exit or sys.exit in a thread?)"
        return f"the kernel died while running this cell: {why}. {RESTARTED}"

    async def _restart(self, cell) -> None:
        """Start a new kernel for the rest of the notebook (``cell`` killed the last one)."""
        record(cell, Outcome.RESTARTED)
        await ensure_async(self.km.restart_kernel(now=True))
        await ensure_async(self.kc.stop_channels())
        await self.async_start_new_kernel_client()
        await self._integrity(self._start, "when the new kernel started")

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``output_limit`` characters of a cell's printed output and
        ``display_limit`` characters of its display outputs."""
        parent = msg["parent_header"].get("msg_id")
        if msg["msg_type"] == "stream":
            used = self._printed.get(parent, 0)
            text = msg["content"]["text"]
            self._printed[parent] = used + len(text)
            if used >= self.output_limit:
                return None
            if used + len(text) > self.output_limit:
                text = text[:self.output_limit - used] + (
                    f"\n[output cut: more than {self.output_limit} characters]\n")
                msg = {**msg, "content": {**msg["content"], "text": text}}
        elif msg["msg_type"] in ("display_data", "execute_result"):
            used = self._displayed.get(parent, 0)
            self._displayed[parent] = used + _chars(msg["content"].get("data", {}))
            if used > self.display_limit:  # the cut was said already
                return None
            if self._displayed[parent] > self.display_limit:
                cut = f"[display output cut: more than {self.display_limit} characters]"
                msg = {**msg, "content": {**msg["content"], "data": {"text/plain": cut},
                                          "metadata": {}}}
                display_id = None
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg) -> None:
        """nbclient's update of a display: refused past ``display_limit`` characters."""
        if _chars(msg["content"].get("data", {})) <= self.display_limit:
            super()._update_display_id(display_id, msg)

    # -- tamper checks (see attnlib.grading.tamper_checks) ------------------------------

    async def _integrity(self, step, moment: str) -> None:
        """Run one integrity step; record what it found (a failed step counts too)."""
        try:
            found = await step()
        except IntegrityCheckFailed as err:
            found = [str(err)]
        for finding in found:
            self._tampering.setdefault(finding, moment)

    async def _start(self) -> list[str]:
        self._baseline = json.loads(await self._call("start"))
        return []

    async def _compare(self) -> list[str]:
        return tamper_checks.changes(self._baseline, json.loads(await self._call("fingerprint")))

    async def _watch(self, source: str) -> list[str]:
        await self._call("watch", source)
        return []

    async def _unwatch(self) -> list[str]:
        return json.loads(await self._call("unwatch"))

    async def _canary(self) -> list[str]:
        found = json.loads(await self._call("canary"))
        reply, errors = await self._hidden("raise AssertionError('integrity canary')")
        if reply["content"]["status"] != "error" or not errors:
            found.append("an error raised in a cell no longer reaches the grader")
        return found

    def _tampering_note(self) -> str:
        found = [f"{what} ({moment})" for what, moment in self._tampering.items()]
        shown = "; ".join(found[:6]) + (f"; and {len(found) - 6} more" if len(found) > 6 else "")
        return ("the submission tampered with the checks, so every test scores 0 "
                f"(needs manual review): {shown}")

    async def _call(self, function: str, *args) -> str:
        """Call a function of attnlib.grading.tamper_checks in the kernel; its (string) result."""
        reply, _ = await self._hidden("", tamper_checks.call(function, *args))
        result = reply["content"].get("user_expressions", {}).get("value", {})
        if result.get("status") != "ok":
            raise IntegrityCheckFailed(
                f"the integrity check {function}() failed in the kernel: "
                f"{result.get('ename')}: {result.get('evalue')}")
        return ast.literal_eval(result["data"]["text/plain"])

    async def _hidden(self, code: str, expression: str | None = None):
        """Run ``code`` silently (no history, no output in the notebook), then evaluate
        ``expression``; the execute reply and the error messages it published."""
        msg_id = await ensure_async(self.kc.execute(
            code, silent=True, store_history=False, stop_on_error=False,
            user_expressions={"value": expression} if expression else {}))
        deadline = monotonic() + self.startup_timeout
        errors, idle = [], False
        while not idle:
            msg = await self._next(self.kc.iopub_channel, deadline)
            if msg["parent_header"].get("msg_id") == msg_id:
                errors += [msg] if msg["msg_type"] == "error" else []
                idle = (msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle")
        while True:
            reply = await self._next(self.kc.shell_channel, deadline)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply, errors

    async def _next(self, channel, deadline: float) -> dict:
        while True:
            try:
                return await ensure_async(channel.get_msg(timeout=1))
            except Empty:
                await self._async_check_alive()  # raises DeadKernelError
                if monotonic() > deadline:
                    raise IntegrityCheckFailed(
                        f"the kernel did not answer the integrity check within "
                        f"{self.startup_timeout} s") from None
