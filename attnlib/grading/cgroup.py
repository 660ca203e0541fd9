"""A control group for each grading sandbox: its memory and its tasks capped as a whole.

``RLIMIT_DATA`` caps each process of the sandbox on its own, so forked children
could each take the whole limit. A control group (cgroup) caps them together:
past ``memory`` bytes (what its processes allocate, and what they write to
its tmpfs folders) the kernel's OOM killer kills one of them; past ``tasks``
processes and threads, ``fork`` and thread creation fail.

The group is made inside the grader's own cgroup, in the cgroup v1 hierarchies
of the ``memory`` and ``pids`` controllers, or in the unified (v2) hierarchy
where those controllers are delegated to the grader's group. That needs write
access there: root, or a delegated subtree (systemd's ``Delegate=yes``). Where
none can be made, :func:`unavailable` says why, and the sandbox keeps its
per-process limits only.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids")


def _hierarchies() -> dict[str, tuple[Path, int]]:
    """``controller -> (this process's cgroup folder, cgroup version)`` for the
    controllers of :data:`CONTROLLERS` that this machine mounts."""
    v1_mounts, v2_mount = {}, None
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, where, kind, options = line.split()[:4]
            if kind == "cgroup2":
                v2_mount = v2_mount or where
            elif kind == "cgroup":
                for controller in set(options.split(",")) & set(CONTROLLERS):
                    v1_mounts[controller] = where
    found = {}
    with open("/proc/self/cgroup") as groups:
        for line in groups:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                if controller in v1_mounts:
                    found[controller] = (Path(v1_mounts[controller] + path), 1)
            if number == "0" and v2_mount is not None:
                folder = Path(v2_mount + path)
                try:
                    delegated = (folder / "cgroup.subtree_control").read_text().split()
                except OSError:
                    delegated = []
                for controller in set(delegated) & set(CONTROLLERS):
                    found.setdefault(controller, (folder, 2))
    return found


def _settings(controller: str, version: int, memory: int, tasks: int) -> dict[str, int]:
    """The files of ``controller`` that set the limits, and their values (swap: none)."""
    if controller == "pids":
        return {"pids.max": tasks}
    if version == 1:
        return {"memory.limit_in_bytes": memory, "memory.memsw.limit_in_bytes": memory}
    return {"memory.max": memory, "memory.swap.max": 0}


@dataclass
class Cgroup:
    """One control group, a folder in each hierarchy (v2: one folder for both)."""
    folders: dict[str, Path]  # controller -> folder

    @classmethod
    def create(cls, memory: int, tasks: int) -> Cgroup:
        """A new control group capped at ``memory`` bytes and ``tasks`` processes and
        threads. Raises ``OSError`` saying why if this machine cannot make one."""
        hierarchies = _hierarchies()
        missing = [c for c in CONTROLLERS if c not in hierarchies]
        if missing:
            raise OSError(f"no {' or '.join(missing)} cgroup controller is available to this "
                          "process (neither mounted as cgroup v1 nor delegated in cgroup v2)")
        name = f"attnlib-grading-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        group = cls(folders={})
        try:
            for controller, (parent, version) in hierarchies.items():
                folder = parent / name
                if folder not in group.folders.values():
                    folder.mkdir()
                group.folders[controller] = folder
                for setting, value in _settings(controller, version, memory, tasks).items():
                    if (folder / setting).exists():  # no swap accounting: nothing to cap
                        (folder / setting).write_text(str(value))
        except OSError:
            group.remove()
            raise
        return group

    def join(self) -> None:
        """Move the calling process into the group (in a child, before it runs anything)."""
        for folder in set(self.folders.values()):
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """Kill what is left in the group, then remove it."""
        for folder in set(self.folders.values()):
            deadline = time.monotonic() + 5
            while folder.exists():
                try:
                    for pid in (folder / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
                    folder.rmdir()
                except (ProcessLookupError, FileNotFoundError):
                    continue
                except OSError:  # still busy: its processes are exiting
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """Why no control group can be made for a sandbox here, or None if one can."""
    if not sys.platform.startswith("linux"):
        return f"control groups need Linux, this is {sys.platform}"
    try:
        Cgroup.create(memory=64 * 2**20, tasks=8).remove()
    except OSError as err:
        return str(err)
    return None
