"""The grading kernel's sandbox: bubblewrap on Linux, a control group, and per-process limits.

A submission is code written by someone else, so the kernel that grades it runs
in a bubblewrap (``bwrap``) sandbox when one is available:

- no network (a network namespace of its own, with only a loopback device);
- the system (``/usr``, a few files of ``/etc``), Python and the ``attnlib``
  package are mounted read-only; nothing else of the machine is visible, so the
  gradebook, ``solutions/``, the hidden tests and the rest of the repository
  are out of reach;
- nothing of the grader's environment: bubblewrap itself is started with the
  kernel's few variables only, and the sandbox has its own process namespace
  and ``/proc``, so no process the submission can see holds the grader's;
- the only writable place is the kernel's scratch folder (its working
  directory, ``HOME`` and ``TMPDIR``): a tmpfs of its own, ``scratch_size``
  bytes in all (writing past that fails in the kernel with "No space left on
  device"), and a 64 MiB private ``/dev/shm`` for semaphores; ``/tmp`` and
  ``/dev`` are private and read-only;
- its own IPC and host-name namespaces, a fresh session (no terminal), and it
  dies with the grader.

Where a control group can be made (:mod:`attnlib.grading.cgroup`), the whole
sandbox is in one: its processes together may use ``memory`` bytes and run
``processes`` processes and threads. Inside (or without) the sandbox, the
kernel process also limits itself before it runs anything of the submission:
private memory per process (``RLIMIT_DATA``: a large allocation fails with
``MemoryError``), CPU time (``RLIMIT_CPU``), the size of any file it writes and
the number of processes of its user (``RLIMIT_NPROC``, which does not bind a
grader running as root).

The kernel talks to the grader over Unix sockets in its scratch folder (a
network namespace of its own has no route to the grader's TCP ports), which
the grader reaches through the sandbox's ``/proc/<pid>/root``. The memory limit
is not enforced on macOS, which ignores ``RLIMIT_DATA``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Instance, Unicode

from . import cgroup, limits
from .cgroup import Cgroup
from .limits import GiB, MiB


def parse_size(text: str | int, what: str = "memory limit") -> int:
    """Bytes in a size such as ``"4GiB"``, ``"512 MiB"``, ``"2G"`` or ``1073741824``;
    ``what`` names the setting in the error."""
    units = {"": 1, "k": 2**10, "m": MiB, "g": GiB, "t": 2**40}
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.I)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{what}: expected a size such as 4GiB or 512MiB, got {text!r}")
    return int(float(match.group(1)) * units[match.group(2).lower()])


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading kernel (defaults: :mod:`attnlib.grading.limits`)."""
    memory: int = parse_size(limits.MEMORY)  # bytes: the sandbox in all (cgroup), each process
    cpu_time: int = limits.CPU_TIME          # seconds of CPU time of the kernel process
    file_size: int = limits.FILE_SIZE        # bytes: the largest file the kernel may write
    processes: int = limits.PROCESSES        # processes and threads running at once
    scratch_size: int = parse_size(limits.SCRATCH_SIZE)  # bytes the scratch folder holds


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """Why the bubblewrap sandbox cannot be used here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux, this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = subprocess.run([bwrap, "--unshare-all", *_system_binds(), "--size", str(MiB),
                            "--tmpfs", "/tmp", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap does not work here: {probe.stderr.strip() or probe.returncode}"
    return None


def why_not(enabled: bool = True) -> str | None:
    """Why a grading kernel runs without the sandbox (None: it runs in it);
    ``enabled`` is the ``GradingExecute.sandbox`` setting."""
    return unavailable() if enabled else "switched off in the configuration"


def _system_binds() -> list[str]:
    """Read-only mounts of the system: /usr and its merged-/usr links, the dynamic
    linker's cache and the few files of /etc that Python reads (no secrets)."""
    args = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group",
                 "nsswitch.conf"):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python_dirs() -> list[str]:
    """What the kernel needs to run Python with ``attnlib``: the interpreter's
    installation, the environment (virtualenv) and the attnlib package itself
    (in an editable install only the package folder, not the repository around it)."""
    dirs = {sys.base_prefix, sys.prefix, str(Path(__file__).parents[1])}
    return sorted(dirs | {os.path.realpath(d) for d in dirs})


def _font_caches() -> list[Path]:
    """The grader's matplotlib font caches (building one in the kernel takes seconds)."""
    try:
        import matplotlib
        return sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
    except Exception:  # matplotlib missing or without a cache: the kernel builds one
        return []


def bwrap_command(scratch: str, env: dict[str, str], connection_file: str, scratch_size: int,
                  info_fd: int) -> list[str]:
    """The ``bwrap ... --`` prefix that runs a command in the sandbox with the
    environment ``env`` only, a tmpfs of ``scratch_size`` bytes at ``scratch`` as its
    working folder and the kernel's ``connection_file`` read-only; bubblewrap writes
    the pid of the sandbox's first process to ``info_fd``."""
    args = [shutil.which("bwrap"), "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--info-fd", str(info_fd), *_system_binds()]
    # /tmp and /dev are the sandbox's own; /dev/shm (for semaphores) is small, as its
    # pages would escape the per-process memory limit
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.SHM_SIZE), "--tmpfs", "/dev/shm",
             "--tmpfs", "/tmp"]
    for path in _python_dirs():  # after /tmp: an environment may live under it
        args += ["--ro-bind", path, path]
    args += ["--size", str(scratch_size), "--tmpfs", scratch, "--chdir", scratch,
             "--ro-bind", connection_file, connection_file]
    for font_list in _font_caches():
        args += ["--ro-bind", str(font_list), f"{scratch}/.matplotlib/{font_list.name}"]
    args += ["--remount-ro", "/dev", "--remount-ro", "/tmp", "--remount-ro", "/", "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--"]


def kernel_env(scratch: str) -> dict[str, str]:
    """The kernel's environment: nothing of the grader's but the locale."""
    env = {"HOME": scratch, "MPLCONFIGDIR": os.path.join(scratch, ".matplotlib"),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
           "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
           "TMPDIR": scratch}
    env.update({k: v for k, v in os.environ.items() if k == "LANG" or k.startswith("LC_")})
    return env


def _child_pid(info_fd: int) -> int | None:
    """The pid (here) of the sandbox's first process, from what bubblewrap wrote to
    ``info_fd`` (read to its end, then closed); None if it wrote nothing."""
    with os.fdopen(info_fd, "rb") as info:
        text = info.read()
    try:
        return int(json.loads(text)["child-pid"])
    except (ValueError, KeyError):
        return None


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs this Python in the sandbox, with limits.

    Whatever kernel the notebook names, the kernel is this interpreter's
    ``ipykernel``. It is interrupted by a message (a signal would stop the
    sandbox around it) and reached through Unix sockets in its scratch folder,
    ``work/scratch``: in the sandbox a tmpfs, seen from here through the link
    ``work/scratch -> /proc/<pid>/root/<work>/scratch``.
    """

    work = Unicode(help="the grader's folder for this kernel: its connection file, its log "
                        "and its scratch folder (work/scratch)")
    limits = Instance(Limits, args=())
    use_bwrap = Bool(True, help="run the kernel in the bubblewrap sandbox")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scratch = os.path.join(self.work, "scratch")
        self.output_file = os.path.join(self.work, "kernel.log")
        self.cgroup: Cgroup | None = None  # made when the kernel starts, where possible
        self._info_fds: tuple[int, int] | None = None
        if os.name == "posix":  # Unix sockets: private to the scratch folder, unlike TCP
            self.transport = "ipc"
            self.ip = os.path.join(self.scratch, "kernel")
        self.connection_file = os.path.join(self.work, "kernel.json")
        self._kernel_spec = KernelSpec(argv=[], display_name="Python 3 (grading)",
                                       language="python", interrupt_mode="message")
        if not self.use_bwrap:  # a plain folder, with the font cache copied in
            os.makedirs(os.path.join(self.scratch, ".matplotlib"))
            for font_list in _font_caches():
                shutil.copy(font_list, os.path.join(self.scratch, ".matplotlib"))

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        kernel = self.limits
        cmd = [sys.executable, "-m", "attnlib.grading.sandbox", f"--memory={kernel.memory}",
               f"--cpu-time={kernel.cpu_time}", f"--file-size={kernel.file_size}",
               f"--processes={kernel.processes}", "-f", self.connection_file,
               *(extra_arguments or [])]
        if self.use_bwrap:
            self._info_fds = os.pipe()
            cmd = bwrap_command(self.scratch, kernel_env(self.scratch), self.connection_file,
                                kernel.scratch_size, self._info_fds[1]) + cmd
        return cmd

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        # bubblewrap gets the kernel's environment too (and passes on none of it): the
        # sandbox's first process is a copy of bubblewrap, whose /proc/1/environ would
        # otherwise show the grader's
        kw["env"] = kernel_env(self.scratch)
        if not self.use_bwrap:
            kw["cwd"] = self.scratch
        if cgroup.unavailable() is None and self.cgroup is None:
            self.cgroup = Cgroup.create(self.limits.memory, self.limits.processes)
        if self.cgroup is not None:
            kw["preexec_fn"] = self.cgroup.join
        try:
            await self._launch(kernel_cmd, **kw)
        except BaseException:  # no kernel to shut down later: its control group goes now
            if self.cgroup is not None:
                self.cgroup.remove()
                self.cgroup = None
            raise

    async def _launch(self, kernel_cmd: list[str], **kw) -> None:
        """Start the kernel process; in the sandbox, link its scratch folder here."""
        # its banner and its last words (why it did not start) are kept, not shown; the
        # file-size limit bounds what a submission can write there
        with open(self.output_file, "wb") as log:
            kw["stdout"] = kw["stderr"] = log
            if self._info_fds is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            read, write = self._info_fds
            try:
                await super()._async_launch_kernel(kernel_cmd, **kw, pass_fds=(write,))
            except BaseException:
                os.close(read)
                raise
            finally:
                os.close(write)
        pid = await asyncio.get_running_loop().run_in_executor(None, _child_pid, read)
        if pid is None:
            raise RuntimeError("bubblewrap did not start the sandbox")
        if os.path.islink(self.scratch):  # the link to the sandbox of a previous kernel
            os.unlink(self.scratch)
        os.symlink(f"/proc/{pid}/root{self.scratch}", self.scratch)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def last_words(self, lines: int = 5) -> str:
        """The end of what the kernel process wrote to its stdout and stderr."""
        try:
            with open(self.output_file, "rb") as log:
                log.seek(max(0, os.fstat(log.fileno()).st_size - 4096))
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


def _limit(which: str, value: int) -> None:
    import resource

    name = getattr(resource, which, None)
    if name is None:  # not on this system
        return
    soft, hard = value, value if which != "RLIMIT_CPU" else value + 5
    current_hard = resource.getrlimit(name)[1]
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(name, (soft, hard))


def main(argv: list[str]) -> None:
    """``python -m attnlib.grading.sandbox --memory=B --cpu-time=S --file-size=B --processes=N
    <ipykernel args>``: set the limits on this process, then become the kernel."""
    limits = {"--memory": "RLIMIT_DATA", "--cpu-time": "RLIMIT_CPU",
              "--file-size": "RLIMIT_FSIZE", "--processes": "RLIMIT_NPROC"}
    rest = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in limits:
            if os.name == "posix":
                _limit(limits[key], int(value))
        else:
            rest.append(arg)
    if os.name == "posix":
        _limit("RLIMIT_CORE", 0)
    from ipykernel import kernelapp

    kernelapp.launch_new_instance(argv=rest)


if __name__ == "__main__":
    main(sys.argv[1:])
