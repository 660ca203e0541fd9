"""The grading kernel's sandbox: bubblewrap on Linux, CPU-time and memory limits everywhere.

A submission is code written by someone else, so the kernel that grades it runs
in a bubblewrap (``bwrap``) sandbox when one is available:

- no network (a network namespace of its own, with only a loopback device);
- the system (``/usr``, a few files of ``/etc``), Python and the ``attnlib``
  package are mounted read-only; nothing else of the machine is visible, so the
  gradebook, ``solutions/``, the hidden tests and the rest of the repository
  are out of reach;
- the only writable place is the kernel's own scratch folder (its working
  directory, ``HOME`` and ``TMPDIR``), and a 64 MiB private ``/dev/shm`` for
  semaphores; ``/tmp`` and ``/dev`` are private and read-only;
- its own process, IPC and host-name namespaces, a fresh session (no terminal),
  and it dies with the grader.

Inside (or without) the sandbox, the kernel process limits itself before it
runs anything of the submission: private memory (``RLIMIT_DATA``, default
4 GiB), CPU time (``RLIMIT_CPU``) and the size of any file it writes.

The kernel talks to the grader over Unix sockets in the scratch folder (a
network namespace of its own has no route to the grader's TCP ports). The
memory limit is not enforced on macOS, which ignores ``RLIMIT_DATA``.
"""

from __future__ import annotations

import functools
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

from . import limits
from .limits import GiB, MiB


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"4GiB"``, ``"512 MiB"``, ``"2G"`` or ``1073741824``."""
    units = {"": 1, "k": 2**10, "m": MiB, "g": GiB, "t": 2**40}
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.I)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"memory limit: expected a size such as 4GiB or 512MiB, got {text!r}")
    return int(float(match.group(1)) * units[match.group(2).lower()])


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading kernel (defaults: :mod:`attnlib.grading.limits`)."""
    memory: int = parse_size(limits.MEMORY)  # bytes of private (heap and anonymous) memory
    cpu_time: int = limits.CPU_TIME          # seconds of CPU time of the kernel process
    file_size: int = limits.FILE_SIZE        # bytes: the largest file the kernel may write


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """Why the bubblewrap sandbox cannot be used here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux, this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = subprocess.run([bwrap, "--unshare-all", *_system_binds(), "--", "true"],
                           capture_output=True, text=True)
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


def bwrap_command(scratch: str, env: dict[str, str]) -> list[str]:
    """The ``bwrap ... --`` prefix that runs a command in the sandbox."""
    args = [shutil.which("bwrap"), "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", *_system_binds()]
    # /tmp and /dev are the sandbox's own; /dev/shm (for semaphores) is small, as its
    # pages would escape the memory limit
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.SHM_SIZE), "--tmpfs", "/dev/shm",
             "--tmpfs", "/tmp"]
    for path in _python_dirs():  # after /tmp: an environment may live under it
        args += ["--ro-bind", path, path]
    args += ["--bind", scratch, scratch, "--chdir", scratch,
             "--remount-ro", "/dev", "--remount-ro", "/tmp", "--remount-ro", "/",
             "--clearenv"]
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


def _copy_font_cache(scratch: str) -> None:
    """Give matplotlib in the kernel the grader's font cache (building it takes seconds)."""
    try:
        import matplotlib
        cache = Path(matplotlib.get_cachedir())
    except Exception:  # matplotlib missing or without a cache: it will build one
        return
    target = Path(scratch) / ".matplotlib"
    target.mkdir(exist_ok=True)
    for font_list in cache.glob("fontlist-*.json"):
        shutil.copy(font_list, target)


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs this Python in the sandbox, with limits.

    Whatever kernel the notebook names, the kernel is this interpreter's
    ``ipykernel``. It is interrupted by a message (a signal would stop the
    sandbox around it) and reached through Unix sockets in ``scratch``.
    """

    scratch = Unicode(help="the kernel's working folder, the only one it may write")
    output_file = Unicode(help="where the kernel's stdout and stderr go (outside the sandbox)")
    limits = Instance(Limits, args=())
    use_bwrap = Bool(True, help="run the kernel in the bubblewrap sandbox")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if os.name == "posix":  # Unix sockets: private to the scratch folder, unlike TCP
            self.transport = "ipc"
            self.ip = os.path.join(self.scratch, "kernel")
        self.connection_file = os.path.join(self.scratch, "kernel.json")
        self._kernel_spec = KernelSpec(argv=[], display_name="Python 3 (grading)",
                                       language="python", interrupt_mode="message")
        _copy_font_cache(self.scratch)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        kernel = self.limits
        cmd = [sys.executable, "-m", "attnlib.grading.sandbox", f"--memory={kernel.memory}",
               f"--cpu-time={kernel.cpu_time}", f"--file-size={kernel.file_size}",
               "-f", self.connection_file, *(extra_arguments or [])]
        if self.use_bwrap:
            cmd = bwrap_command(self.scratch, kernel_env(self.scratch)) + cmd
        return cmd

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        if not self.use_bwrap:
            kw["env"] = kernel_env(self.scratch)
            kw["cwd"] = self.scratch
        # its banner and its last words (why it did not start) are kept, not shown; the
        # file-size limit bounds what a submission can write there
        with open(self.output_file or os.devnull, "wb") as log:
            kw["stdout"] = kw["stderr"] = log
            await super()._async_launch_kernel(kernel_cmd, **kw)

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
    """``python -m attnlib.grading.sandbox --memory=B --cpu-time=S --file-size=B <ipykernel args>``:
    set the limits on this process, then become the kernel."""
    limits = {"--memory": "RLIMIT_DATA", "--cpu-time": "RLIMIT_CPU",
              "--file-size": "RLIMIT_FSIZE"}
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
