"""One parallel map for every parallel part of digitcli: ordered, lazy, memory-bounded.

:func:`ordered_map` runs ``fn(task)`` for each task and yields the results in input order,
reading the tasks lazily and keeping only a few in flight. Where the work runs:

* one worker (``jobs == 1``) or a single task: here, in this process;
* by default: a pool of worker processes, forked where that is safe (they start in
  milliseconds with everything imported), which survives the death of a worker;
* when the caller chose a joblib backend (``joblib.parallel_config(backend=...)``, for
  instance ``"loky"``, ``"threading"`` or ``"dask"``): that backend, through
  :class:`joblib.Parallel`.

:func:`scheduler` chooses joblib's ``"dask"`` backend on a Dask cluster (the extra
``digitcli[dask]``).

The results do not depend on where the work ran: a task's result may only depend on the
task (seeds travel in the tasks, never per worker).

joblib is only imported when a joblib backend was chosen, so that ``classify`` stays light.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from digitcli.errors import DigitcliError

if TYPE_CHECKING:  # the pool's modules are imported when a pool is started (6 ms)
    from concurrent.futures import Future

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")

#: Tasks in flight per worker: enough to keep the workers busy, few enough to stay small.
IN_FLIGHT = 4
#: While waiting for a result, how often the workers are looked at, and how long a dead
#: worker may go unnoticed by the executor before the wait is taken for stuck.
_POLL_SECONDS = 0.5
_STUCK_SECONDS = 3.0

#: The extra that brings Dask, as pip spells it.
DASK_EXTRA = "pip install 'digitcli[dask]'"


class WorkerDied(DigitcliError):
    """A task killed its worker process (a crashing library, the out-of-memory killer)."""


#: ``salvage(task, run)``: the result of a task that killed its worker twice, made from
#: smaller tasks; ``run(subtask)`` runs one in a worker and raises :class:`WorkerDied` if
#: that kills it.
Salvage = Callable[[T, Callable[[T], R]], R]


def ordered_map(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    *,
    jobs: int = 1,
    in_flight: int = IN_FLIGHT,
    salvage: Salvage[T, R] | None = None,
) -> Iterator[R]:
    """``fn(task)`` for every task, in input order, in parallel; tasks are read lazily.

    At most ``in_flight`` tasks per worker are read ahead of the results handed on, so
    memory does not grow with the number of tasks. A result is yielded as soon as it and
    every one before it are done. Closing the iterator early stops the workers.

    Where the work runs (see the module's description): here when ``jobs == 1`` or there
    is a single task; else on joblib's backend if one was chosen with
    :func:`joblib.parallel_config` (which then decides how many workers ``jobs`` means:
    Dask's uses every worker of the cluster); else in a pool of ``jobs`` worker processes.

    In that pool, a task in flight when a worker dies is run again once; a task that kills
    a worker twice is given to `salvage`, or raises :class:`WorkerDied` if there is none.
    On a joblib backend, worker deaths are joblib's (and Dask's) to handle.

    Parameters
    ----------
    fn : callable
        Run in the workers: a module-level function or a :func:`functools.partial` of one
        (the pool pickles it by name), taking one task.
    tasks : iterable
        The tasks (small, picklable), consumed lazily.
    jobs : int
        Workers (-1 or less: all cores).
    in_flight : int
        Tasks in flight per worker.
    salvage : callable or None
        ``salvage(task, run)``: see :data:`Salvage`.

    Yields
    ------
    object
        ``fn(task)``, in the order of `tasks`.
    """
    tasks = iter(tasks)
    if joblib_backend() is not None:
        yield from _joblib_map(fn, tasks, jobs, in_flight)
        return
    first = list(itertools.islice(tasks, 1 if jobs == 1 else 2))
    if len(first) < 2:
        yield from map(fn, itertools.chain(first, tasks))
        return
    yield from _pooled(fn, itertools.chain(first, tasks), _workers(jobs), in_flight, salvage)


def cores() -> int:
    """The cores this process may run on."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return count or 1


def _workers(jobs: int) -> int:
    return jobs if jobs > 0 else cores()


def joblib_backend() -> Any:
    """The joblib backend the caller chose (``joblib.parallel_config``), or None.

    joblib keeps the active configuration in a thread-local, ``joblib.parallel._backend``:
    its ``config["backend"]`` is a backend instance inside ``parallel_config(backend=...)``
    (or the older ``parallel_backend``), and the sentinel
    ``joblib.parallel.default_parallel_config["backend"]`` otherwise. Without joblib
    imported, nothing can have been chosen: joblib is not imported here for that.
    """
    parallel = sys.modules.get("joblib.parallel")
    if parallel is None:
        return None
    config = getattr(getattr(parallel, "_backend", None), "config", None)
    if not isinstance(config, dict):
        return None
    backend = config.get("backend")
    unset = getattr(parallel, "default_parallel_config", {}).get("backend")
    return None if backend is None or backend is unset else backend


def _joblib_map(fn: Callable[[T], R], tasks: Iterator[T], jobs: int, in_flight: int) -> Iterator[R]:
    """Map on the chosen joblib backend, a window of tasks at a time.

    joblib reads more tasks whenever one finishes, whether or not its results are read:
    one long call would convert everything into memory behind a slow reader (a pager).
    So each call gets ``in_flight`` tasks per worker, and the next call starts when its
    results have all been handed on. The price is a short wait for the slowest task of
    each window.
    """
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    window = max(1, in_flight * max(1, backend.effective_n_jobs(jobs)))
    with Parallel(n_jobs=jobs, return_as="generator", batch_size=1, pre_dispatch="all") as run:
        while wave := list(itertools.islice(tasks, window)):
            yield from run(delayed(fn)(task) for task in wave)


def _worker_init() -> None:
    """Set up a worker process: signals are the main process's business.

    Ctrl-C reaches every process of the terminal's group: the main process stops the pool
    and keeps what is done, so a worker ignores it rather than print a traceback. SIGTERM
    and SIGHUP end a worker at once. On Linux a worker is also ended when the main process
    dies, so none is left behind.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _can_fork() -> bool:
    """Whether worker processes can be forked: Linux, and no other Python thread running.

    Forked workers start in milliseconds with everything imported; spawned ones take about
    0.4 s to import numpy and Pillow again.
    """
    import multiprocessing

    return (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
    )


class _Pool:
    """A process pool that survives the death of a worker: :meth:`restart` starts a new one."""

    def __init__(self, fn: Callable[[Any], Any], jobs: int) -> None:
        self.fn, self.jobs = fn, jobs
        self.method = "fork" if _can_fork() else "spawn"
        self._start()

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self.method == "fork":
            # The objects this process holds are the workers' too: kept out of the cyclic
            # garbage collector's passes, their pages stay shared instead of being copied
            # into each worker when it collects (as Python's gc.freeze documents).
            gc.freeze()
        context = multiprocessing.get_context(self.method)
        self.executor = ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_worker_init)
        # What _watch looks at, private to CPython's executor (3.10 to 3.13 alike), taken
        # now because shutdown(wait=False) forgets them. The dict is kept up to date.
        processes = getattr(self.executor, "_processes", None)
        self.processes: dict[int, Any] = {} if processes is None else processes
        self.results = getattr(self.executor, "_result_queue", None)

    def submit(self, task: Any) -> Future[Any]:
        """The task's future; if the pool has broken since (a worker died), a failed one.

        The death is then met where the task's result is waited for, as for the tasks
        already in flight: a submit never raises it in the middle of resubmitting them.
        """
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.executor.submit(self.fn, task)
        except BrokenProcessPool as exc:
            failed: Future[Any] = Future()
            failed.set_exception(exc)
            return failed

    def restart(self) -> None:
        self.stop()
        self._start()

    def result(self, future: Future[Any]) -> Any:
        """The future's result; BrokenProcessPool if a worker died, never a wait forever."""
        from concurrent.futures import wait

        self._watch(lambda timeout: bool(wait([future], timeout).done))
        return future.result()

    def _watch(self, done: Callable[[float], bool]) -> None:
        """Wait until ``done(timeout)`` is true, unsticking the executor if it needs it.

        A worker killed while it writes its result leaves half a message in the pipe, and
        the executor's thread then waits for the rest for ever (a CPython limit). So while
        waiting, a killed worker that the executor has not dealt with within
        :data:`_STUCK_SECONDS` is taken for that: filler bytes complete the half message,
        the executor fails to read it and breaks, as it does for any other death.

        Parameters
        ----------
        done : callable
            ``done(timeout)``: waits at most `timeout` seconds, and says whether the wait is
            over.
        """
        dead_since = None
        while not done(_POLL_SECONDS):
            # Exit code 0 is a worker the executor's shutdown ended, its messages whole.
            if not any(p.exitcode not in (None, 0) for p in list(self.processes.values())):
                dead_since = None
                continue
            dead_since = dead_since or time.monotonic()
            if time.monotonic() - dead_since > _STUCK_SECONDS:
                self._unstick()
                dead_since = None

    def _unstick(self) -> None:
        writer = getattr(self.results, "_writer", None)
        if writer is None:
            return
        fd = writer.fileno()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):
            os.write(fd, b"\0" * (1 << 16))

    def run(self, task: Any) -> Any:
        """One task on its own; :class:`WorkerDied` (and a new pool) if it kills its worker."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.result(self.submit(task))
        except BrokenProcessPool:
            self.restart()
            raise WorkerDied("a task killed its worker process") from None

    def salvaged(self, task: Any, salvage: Salvage[Any, Any] | None) -> Any:
        """The result of a task that killed a worker twice, through `salvage`."""
        if salvage is None:
            raise WorkerDied("a task killed its worker process twice")
        return salvage(task, self.run)

    def stop(self) -> None:
        """Stop: queued tasks are cancelled; a running task (one a worker) ends first.

        Killing workers here is not safe: one killed while it writes its result leaves the
        executor's thread waiting for the rest. Yet a signal to the whole process group (a
        closed terminal's SIGHUP, a service manager's SIGTERM) kills them wherever they are,
        and ``shutdown(wait=True)`` would then wait for that thread for ever. So the wait
        for it is watched, as :meth:`result`'s is. A task is a chunk of files, so the wait
        is short.
        """
        executor = self.executor
        thread = getattr(executor, "_executor_manager_thread", None)  # forgotten by shutdown
        executor.shutdown(wait=thread is None, cancel_futures=True)
        if thread is not None:

            def ended(timeout: float) -> bool:
                thread.join(timeout)
                return not thread.is_alive()

            self._watch(ended)
            if self.results is not None:
                self.results.close()  # as shutdown(wait=True) does
        gc.unfreeze()


def _pooled(
    fn: Callable[[T], R],
    tasks: Iterator[T],
    jobs: int,
    in_flight: int,
    salvage: Salvage[T, R] | None,
) -> Iterator[R]:
    """Run tasks in a pool of worker processes, streamed in order, a few in flight."""
    from concurrent.futures.process import BrokenProcessPool

    with warnings.catch_warnings():
        # Python >= 3.12 warns when forking a process with threads: numpy's BLAS keeps
        # an idle one, which it re-creates in the child (pthread_atfork). Python
        # threads, which could hold locks, rule fork out (_can_fork).
        warnings.filterwarnings(
            "ignore", message=r".*multi-threaded, use of fork", category=DeprecationWarning
        )
        pool = _Pool(fn, jobs)
        # In flight: a task, its future, and whether it is a second try.
        pending: collections.deque[tuple[T, Future[R], bool]] = collections.deque()
        end = object()
        try:
            for task in itertools.chain(tasks, [end]):
                if task is not end:
                    pending.append((task, pool.submit(task), False))  # type: ignore[arg-type]
                # Hand on what is done before reading more input (which may be slow to come).
                while pending and (
                    task is end or len(pending) >= in_flight * jobs or pending[0][1].done()
                ):
                    head, future, retried = pending.popleft()
                    try:
                        yield pool.result(future)
                    except BrokenProcessPool:
                        # Every task in flight is lost with the pool. A new pool runs them
                        # again whole (a worker killed from outside costs only time); a task
                        # that breaks the pool twice goes to `salvage`, so that as little as
                        # possible is lost.
                        lost = [t for t, _, _ in pending]
                        pending.clear()
                        pool.restart()
                        if retried:
                            yield pool.salvaged(head, salvage)
                        else:
                            lost.insert(0, head)
                        pending.extend((t, pool.submit(t), True) for t in lost)
        finally:
            pool.stop()


@contextlib.contextmanager
def scheduler(address: str | None = None) -> Iterator[Any]:
    """Run every :func:`ordered_map` inside on a Dask cluster, through joblib's backend.

    Parameters
    ----------
    address : str or None
        The scheduler, e.g. ``tcp://host:8786``. None: Dask's own setting
        (``scheduler-address`` in its configuration, which ``$DASK_SCHEDULER_ADDRESS``
        sets); if there is none, nothing changes and the work runs here.

    Yields
    ------
    distributed.Client or None
        The client, or None when there is no scheduler to use.

    Raises
    ------
    DigitcliError
        If Dask is not installed (the message names the extra), the scheduler cannot be
        reached, or its workers cannot run this digitcli.
    """
    if address is None:
        address = _default_address()
    if not address:
        yield None
        return
    try:
        import distributed
        from joblib import parallel_config
    except ImportError:
        raise DigitcliError(f"a Dask scheduler needs Dask: {DASK_EXTRA}") from None
    try:
        client = distributed.Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DigitcliError(f"cannot use the Dask scheduler {address}: {message}") from None
    with client:
        _check_workers(client, address)
        with parallel_config(backend="dask", client=client):
            yield client


def _default_address() -> str | None:
    """Dask's ``scheduler-address`` setting: ``$DASK_SCHEDULER_ADDRESS``, else its config files.

    The variable is read here too: Dask reads its environment once, when imported.
    """
    address = os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return address
    if not any(os.path.isdir(folder) for folder in _dask_config_folders()):
        return None  # no configuration file: importing Dask (70 ms) would find nothing
    try:
        import dask.config
    except ImportError:  # no Dask, no Dask configuration
        return None
    return dask.config.get("scheduler-address", None) or None


def _dask_config_folders() -> list[str]:
    """Where Dask looks for its YAML configuration (as ``dask.config.paths`` lists them)."""
    return [
        os.environ.get("DASK_ROOT_CONFIG", "/etc/dask"),
        os.path.join(sys.prefix, "etc", "dask"),
        os.environ.get("DASK_CONFIG", os.path.join(os.path.expanduser("~"), ".config", "dask")),
    ]


def _version() -> str:
    from digitcli import __version__

    return __version__


def _check_workers(client: Any, address: str) -> None:
    """The cluster's workers must run this digitcli: the same version, importable."""
    from digitcli import __version__

    try:
        versions = client.run(_version)
    except Exception as exc:  # noqa: BLE001 - Dask hands the workers' error back as Exception
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DigitcliError(
            f"the workers of {address} cannot run digitcli ({reason}): install it on every machine"
        ) from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        raise DigitcliError(
            f"the workers of {address} run digitcli {', '.join(other)}, this is {__version__}: "
            "install the same version everywhere"
        )


__all__ = ["IN_FLIGHT", "WorkerDied", "joblib_backend", "ordered_map", "scheduler"]
