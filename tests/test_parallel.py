"""digitcli.parallel: one ordered, lazy, bounded map, whatever runs it."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from digitcli import batch, parallel, training
from digitcli.cli import cli
from digitcli.synth import render_digit

_PARENT = os.getpid()


@pytest.fixture(autouse=True, scope="module")
def _no_loky_left():
    """Shut joblib's reusable loky workers down after this module.

    Left idle, they time out (300 s) while the tests go on, and loky's manager thread then
    waits on them for ever when the interpreter exits.
    """
    yield
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _square(x: int) -> int:
    time.sleep(0.001 * (x % 3))  # finish out of order
    return x * x


def _fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError("five")
    return x


def _sum_or_die(task: list[int]) -> int:
    """A task holding 13 kills its worker process (SIGKILL), as a crashing library would."""
    if 13 in task and os.getpid() != _PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    return sum(task)


class Recorder:
    """Tasks 0 .. n-1, recording how many were read; checks the reading stays ahead by little."""

    def __init__(self, n: int) -> None:
        self.n, self.read, self.ahead = n, 0, 0

    def __iter__(self):
        for i in range(self.n):
            self.read += 1
            yield i

    def take(self, results):
        out = []
        for result in results:
            self.ahead = max(self.ahead, self.read - len(out))
            out.append(result)
        return out


@pytest.fixture
def forked(monkeypatch):
    monkeypatch.setattr(parallel, "_can_fork", lambda: True)


# (name, jobs, joblib backend or None) of the ways to run a map.
WAYS = [
    ("here", 1, None),
    ("pool", 2, None),
    ("threading", 2, "threading"),
    ("loky", 2, "loky"),
]


def _run(way, fn, tasks, **kw):
    _, jobs, backend = way
    if backend is None:
        return list(parallel.ordered_map(fn, tasks, jobs=jobs, **kw))
    from joblib import parallel_config

    with parallel_config(backend=backend):
        return list(parallel.ordered_map(fn, tasks, jobs=jobs, **kw))


@pytest.mark.parametrize("way", WAYS, ids=[w[0] for w in WAYS])
def test_results_come_in_input_order(way, forked):
    assert _run(way, _square, range(30)) == [x * x for x in range(30)]
    assert _run(way, _square, iter([])) == []
    assert _run(way, _square, [7]) == [49]


@pytest.mark.parametrize("way", WAYS[:3], ids=[w[0] for w in WAYS[:3]])
def test_tasks_are_read_lazily_and_few_are_in_flight(way, forked):
    _, jobs, backend = way
    tasks = Recorder(50)
    results = parallel.ordered_map(_square, tasks, jobs=jobs, in_flight=2)
    if backend is None:
        got = tasks.take(results)
    else:
        from joblib import parallel_config

        with parallel_config(backend=backend):
            got = tasks.take(results)
    assert got == [x * x for x in range(50)]
    # Read ahead of the results handed on: at most in_flight per worker.
    assert tasks.ahead <= 2 * jobs
    if jobs == 1:
        assert tasks.ahead == 1


def test_nothing_is_read_before_the_first_result_is_asked_for():
    tasks = Recorder(5)
    results = parallel.ordered_map(_square, tasks, jobs=2)
    assert tasks.read == 0
    results.close()


def test_a_task_error_reaches_the_caller(forked):
    with pytest.raises(ValueError, match="five"):
        list(parallel.ordered_map(_fail_on_five, range(10), jobs=2))


def test_a_task_that_kills_its_worker_twice_is_salvaged(forked):
    """The pool's worker-death handling, without batch: retried whole, then salvaged."""
    tasks = [[1, 2], [3, 4], [12, 13, 14], [5], [6, 7]]
    seen = []

    def one_by_one(task, run):
        seen.append(task)
        out = 0
        for x in task:
            try:
                out += run([x])
            except parallel.WorkerDied:
                out -= 1000
        return out

    got = list(parallel.ordered_map(_sum_or_die, tasks, jobs=2, salvage=one_by_one))
    assert got == [3, 7, 12 + 14 - 1000, 5, 13]
    assert seen == [[12, 13, 14]]
    with pytest.raises(parallel.WorkerDied):
        list(parallel.ordered_map(_sum_or_die, tasks, jobs=2))


# Run in a process of its own: a hang there is bounded by a timeout, and leaves no stuck
# executor thread for this interpreter's exit to wait on.
_KILLED_WHILE_STOPPING = """
import multiprocessing.connection, os, signal, struct, sys, time
from pathlib import Path
from digitcli import parallel

parallel._STUCK_SECONDS = 0.5
stopping = Path(sys.argv[1])


def header_only(self, buf):
    self._send(struct.pack("!i", len(buf)))
    os.kill(os.getpid(), signal.SIGKILL)


def task(x):
    if x == 1:  # running when the pool stops; then its worker dies mid-write
        for _ in range(1000):
            if stopping.exists():
                break
            time.sleep(0.01)
        multiprocessing.connection.Connection._send_bytes = header_only
    return x


results = parallel.ordered_map(task, range(8), jobs=2)
assert next(results) == 0
stopping.touch()
results.close()
print("stopped")
"""


def test_a_worker_killed_mid_write_while_the_pool_stops_does_not_hang(tmp_path):
    """A signal to the process group kills workers wherever they are, even mid-result.

    The executor's thread then waits for the rest of the message for ever, and so would a
    plain ``shutdown(wait=True)`` in the pool's stop.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WHILE_STOPPING, str(tmp_path / "stopping")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its workers too are killed below if it hangs
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == b"stopped\n"


def test_the_chosen_joblib_backend_is_detected():
    from joblib import parallel_backend, parallel_config

    assert parallel.joblib_backend() is None
    with parallel_config(n_jobs=3):  # a worker count is not a choice of backend
        assert parallel.joblib_backend() is None
    with parallel_config(backend="threading"):
        assert type(parallel.joblib_backend()).__name__ == "ThreadingBackend"
        with parallel_config(backend="sequential"):
            assert type(parallel.joblib_backend()).__name__ == "SequentialBackend"
    with parallel_backend("loky", n_jobs=2):  # the older spelling
        assert type(parallel.joblib_backend()).__name__ == "LokyBackend"
    assert parallel.joblib_backend() is None


@pytest.mark.parametrize("way", WAYS, ids=[w[0] for w in WAYS])
def test_conversion_is_the_same_whatever_runs_it(way, forked, tmp_path):
    paths = []
    for i in range(21):
        path = tmp_path / f"{i:02d}.png"
        if i == 9:
            path.write_bytes(b"not an image")
        else:
            render_digit(i % 10, seed=i, size=(28, 28)).save(path)
        paths.append(str(path))
    expected = list(batch.iter_converted(paths, jobs=1, chunk_size=4))

    def convert(paths, jobs):
        return list(batch.iter_converted(paths, jobs=jobs, chunk_size=4))

    _, jobs, backend = way
    if backend is None:
        got = convert(paths, jobs)
    else:
        from joblib import parallel_config

        with parallel_config(backend=backend):
            got = convert(paths, jobs)
    assert len(got) == len(expected) == 6
    for (p1, f1, e1, s1), (p2, f2, e2, s2) in zip(got, expected, strict=True):
        assert p1 == p2 and e1 == e2
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(s1, s2)
    assert got[2][2][1] == "cannot identify image file"


TINY = training.Recipe(
    hidden_layers=(8,),
    max_iter=3,
    augment=0,
    ensemble=3,
    synthetic=2,
    pieces=0,
    batch_size=100,
    kernel_weight=0,
)


@pytest.mark.parametrize(
    "way",
    [WAYS[1], WAYS[2], pytest.param(WAYS[3], marks=pytest.mark.slow)],  # loky: imports sklearn
    ids=[w[0] for w in WAYS[1:]],
)
def test_training_is_the_same_whatever_runs_it(way, forked, digits):
    """Seeds travel with the tasks: members and CV scores do not depend on the workers.

    (On joblib's threading backend the fits take turns: see training.fit_network.)
    """
    X, y = digits[0][:300], digits[1][:300]

    def fit(jobs):
        members = training.fit_recipe(X, y, TINY, seed=4, n_jobs=jobs)
        recipes = [TINY, dataclasses.replace(TINY, ensemble=1)]
        scores = training._cv_jobs(X, y, recipes, 2, 4, jobs, None, "cv")
        return members, scores

    expected = fit(1)
    _, jobs, backend = way
    if backend is None:
        got = fit(jobs)
    else:
        from joblib import parallel_config

        with parallel_config(backend=backend):
            got = fit(jobs)
    assert got[1] == expected[1]
    for net, other in zip(got[0], expected[0], strict=True):
        for (W, b), (W2, b2) in zip(net, other, strict=True):
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(b, b2)


def test_scheduler_without_an_address_changes_nothing(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.setitem(sys.modules, "dask", None)  # and no Dask configuration to read
    monkeypatch.setitem(sys.modules, "dask.config", None)
    with parallel.scheduler(None) as client:
        assert client is None
        assert parallel.joblib_backend() is None


@pytest.mark.parametrize("command", ["classify", "eval", "train"])
def test_scheduler_without_the_extra_is_a_one_line_error(
    command, runner, monkeypatch, tmp_path, make_digit
):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    args = {
        "classify": ["classify", str(make_digit(3))],
        "eval": ["eval", "--images", str(tmp_path)],
        "train": ["train", "--out", str(tmp_path / "m.npz")],
    }[command]
    result = runner.invoke(cli, [*args, "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 1, result.output
    assert result.stderr == "Error: a Dask scheduler needs Dask: pip install 'digitcli[dask]'\n"
    # Dask's own setting asks for a cluster just as well.
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "digitcli[dask]" in result.stderr


def test_eval_scheduler_needs_images(runner):
    """Only --images is work for a cluster: --scheduler alone is a usage error, not ignored."""
    result = runner.invoke(cli, ["eval", "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "--scheduler goes with --images" in result.stderr
