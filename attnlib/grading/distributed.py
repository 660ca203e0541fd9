"""Grading tasks on a Dask cluster: ``--scheduler ADDRESS``, or ``--jobs N`` on this machine.

Both go through :func:`run_tasks`. Without a scheduler address it starts a
``dask.distributed.LocalCluster`` of ``jobs`` worker processes with one thread
each, and stops it afterwards; with one, it sends the tasks to that cluster,
whose workers may be on other machines. A task is a function of
:mod:`attnlib.grading` and its arguments (a submitted notebook, its source, the
grading settings), so a worker needs the same environment (Python, ``attnlib``
with its ``grade-cluster`` extra, bubblewrap) but no shared file system: the
notebooks travel to and from the workers as Dask messages.

The scheduler hands each task to a free worker; a task whose worker dies is
given to another (Dask's ``distributed.scheduler.allowed-failures`` times), and
one that still fails is reported as that task's error rather than stopping the
others.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack

from .course import CourseError

CONNECT_TIMEOUT = 30  # seconds to wait for the scheduler at --scheduler ADDRESS, and its workers


def run_tasks(function: Callable[..., dict], tasks: dict[Hashable, tuple], *, jobs: int,
              scheduler: str | None = None, description: str = "grading"
              ) -> Iterator[tuple[Hashable, dict]]:
    """Run ``function(*args)`` for every ``key: args`` of ``tasks`` on a Dask cluster.

    ``jobs``: worker processes of the local cluster (ignored with ``scheduler``);
    ``scheduler``: the address of a running Dask scheduler, e.g.
    ``tcp://10.0.0.5:8786``. Yields ``(key, result)`` as tasks finish, in any
    order, with a progress bar on stderr (count, rate, time left); a task that
    failed gives ``{"error": "<why>"}``.
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
        from tqdm import tqdm
    except ImportError:
        raise CourseError("grading a class needs Dask and tqdm: "
                          "pip install 'attnlib[grade-cluster]'") from None
    with ExitStack() as stack:
        if scheduler is None:  # (the status page on a free port: 8787 may be taken)
            client = stack.enter_context(Client(stack.enter_context(LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True,
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))))
        else:
            client = stack.enter_context(_connect(Client, scheduler))
        futures = {client.submit(function, *args, pure=False): key
                   for key, args in tasks.items()}
        for future in tqdm(as_completed(futures), total=len(futures), desc=description,
                           unit="notebook", file=sys.stderr, dynamic_ncols=True):
            try:
                result = future.result()
            except Exception as err:  # the worker died, or the task raised: report, go on
                result = {"error": f"grading failed on the cluster: {type(err).__name__}: {err}"}
            yield futures[future], result


def _connect(client_class, address: str):
    """A client of the Dask scheduler at ``address`` that has at least one worker, or a
    ``CourseError`` that says which of the two is missing."""
    try:
        client = client_class(address, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError, TypeError) as err:
        raise CourseError(f"--scheduler: cannot reach a Dask scheduler at {address!r} "
                          f"(expected an address such as tcp://host:8786): {err}") from None
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        client.close()
        raise CourseError(f"--scheduler: the Dask scheduler at {address!r} has no workers after "
                          f"{CONNECT_TIMEOUT} s: start them with `dask worker {address}`") from None
    return client
