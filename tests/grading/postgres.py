"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a
data folder in a temporary folder, a free port on 127.0.0.1, stopped afterwards.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root the server runs as the
unprivileged user ``nobody`` (``runuser``). Where no server can be started (not
installed, no such user), the test is skipped with the reason.
"""

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

USER = "nobody"


def _binaries() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest PostgreSQL, else the PATH's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """Start a PostgreSQL server; yields the URL of an empty database on it
    (``postgresql://grader@127.0.0.1:<port>/gradebook``)."""
    binaries = _binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server can be started: initdb was not found "
                    "(apt-get install postgresql)")
    as_user = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("no PostgreSQL server can be started: running as root, and runuser "
                        f"(to run it as {USER}) was not found")
        as_user = ["runuser", "-u", USER, "--"]
    folder = Path(tempfile.mkdtemp(prefix="attnlib-postgres-"))
    if as_user:
        shutil.chown(folder, user=USER)
    data, port = folder / "data", _free_port()

    def postgres(program, *args):
        return subprocess.run([*as_user, str(binaries / program), *args], cwd=folder,
                              capture_output=True, text=True)

    try:
        done = postgres("initdb", "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8")
        if done.returncode != 0:
            pytest.skip(f"no PostgreSQL server can be started: initdb failed: {done.stderr[-500:]}")
        done = postgres("pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w",
                        "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
        if done.returncode != 0:
            log = folder / "server.log"
            pytest.skip(f"no PostgreSQL server can be started: pg_ctl start failed: "
                        f"{done.stderr[-300:]} {log.read_text()[-500:] if log.is_file() else ''}")
        try:
            import psycopg

            with psycopg.connect(host="127.0.0.1", port=port, user="grader", dbname="postgres",
                                 autocommit=True) as db:
                db.execute("CREATE DATABASE gradebook")
            yield f"postgresql://grader@127.0.0.1:{port}/gradebook"
        finally:
            postgres("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
