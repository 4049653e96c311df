"""Ordered parallel map over a process pool with a bounded number of tasks in flight."""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import threading
import time
from multiprocessing import context as mp_context, popen_forkserver, spawn
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait


# A worker's settings (worker_env.py applies them in the local engine's workers): one BLAS/OpenMP
# thread, and glibc malloc serving blocks up to 64 MB from the heap and trimming only above 128 MB
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
MMAP_THRESHOLD, TRIM_THRESHOLD = 64 << 20, 128 << 20


def worker_environment() -> dict[str, str]:
    """The same settings as environment variables (glibc reads MALLOC_*_ when a process starts),
    for workers this code does not start itself (Ray's): they must be in place before numpy loads."""
    return {**{v: "1" for v in THREAD_VARIABLES},
            "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def single_threaded_worker() -> None:
    """Pool initializer: one compute thread per worker process. The pool already uses every core;
    each worker's libraries spawning a thread per core as well would only thrash the caches."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


@contextmanager
def one_thread() -> Iterator[None]:
    """Run model code on one compute thread, then restore the previous setting.

    Not only for speed: OpenCV's DNN results depend on its thread count (int8 SFace vectors differ
    by ~2e-6 between 1 and 2 threads), so every engine runs models this way and a vector does not
    depend on the machine, the engine or the number of jobs.
    """
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def ordered_map(
    fn: Callable,
    items: Iterable,
    jobs: int,
    *,
    window: int | None = None,
    chunk: int = 8,
    buffer: int | None = None,
    initializer: Callable[[], None] | None = single_threaded_worker,
) -> Iterator:
    """Yield fn(item) in input order. jobs=1 runs inline; otherwise a pool with at most
    `window` chunks of `chunk` items running or queued, so a million-image dataset never sits in
    memory at once, and the workers keep computing while the caller handles results (the bounded
    queue that lets the caller's own stage, e.g. batched inference, overlap with theirs).

    A slow chunk at the head of the order does not stall the others: chunks finished after it
    wait in a buffer (at most `buffer` chunks in all, default 4 x window) while new ones are
    submitted, so no worker idles behind one large photo.

    `items` is consumed lazily: pass a generator to keep even the task list out of memory.
    """
    if jobs <= 1:
        for item in items:
            yield fn(item)
        return
    window = window or jobs * 4
    buffer = max(window, buffer or window * 4)
    ctx = _context(needs_main=getattr(fn, "__module__", None) == "__main__")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=start_worker,
                             initargs=(os.getpid(), initializer)) as pool:
        pending: deque = deque()
        it = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < buffer and sum(not f.done() for f in pending) < window:
                    batch = []
                    for _ in range(chunk):
                        try:
                            batch.append(next(it))
                        except StopIteration:
                            exhausted = True
                            break
                    if batch:
                        pending.append(pool.submit(_run_chunk, fn, batch))
                if not pending:
                    return
                if not pending[0].done():
                    # wait for any chunk, not only the head: a finished one frees a place in the window
                    wait([f for f in pending if not f.done()], return_when=FIRST_COMPLETED)
                    continue
                for result in pending.popleft().result():
                    yield result
        finally:
            # a caller that stops early (an error, or a generator closed) must not wait for the window
            for f in pending:
                f.cancel()


# imported once by the fork server, so that every worker starts with them loaded instead of
# importing numpy, OpenCV, pandas and facesieve itself (about a second of CPU per worker);
# worker_env first: one BLAS/OpenMP thread per worker must be set before numpy loads
PRELOAD = ["facesieve.worker_env", "__main__", "facesieve.stages", "facesieve.engines.local"]


def _context(needs_main: bool = False):
    """The pool's start method: a fork server (spawn where there is none).

    Workers that run only facesieve's own functions are not told the caller's main module, so they
    never re-run it: a plain script or a notebook calling `facesieve.run` needs no
    `if __name__ == "__main__"` guard (multiprocessing would otherwise execute the whole script
    again in every worker, whose nested pool then breaks the first one: BrokenProcessPool). A
    function defined in the caller's main module (`needs_main`) keeps multiprocessing's usual
    behaviour, guard included, as does spawn where there is no fork server.
    """
    if "forkserver" not in mp.get_all_start_methods():  # pragma: no cover - not Linux
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # takes effect when the fork server starts (once)
    if needs_main:
        return ctx
    if spawn.get_preparation_data is not _preparation_data:
        spawn.get_preparation_data = _preparation_data  # once; changes nothing unless a library worker starts
    return _LibraryContext()


_launching = threading.local()  # set while this thread starts a worker that must not load __main__


def _preparation_data(name: str, _stdlib=spawn.get_preparation_data) -> dict:
    """multiprocessing's start-up data for a new process, less the main module to re-run when this
    thread is starting a library-only worker (every other process start gets the stdlib's data)."""
    data = _stdlib(name)
    if getattr(_launching, "library_only", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


class _LibraryPopen(popen_forkserver.Popen):
    def _launch(self, process_obj):
        _launching.library_only = True
        try:
            super()._launch(process_obj)
        finally:
            _launching.library_only = False


class _LibraryProcess(mp_context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _LibraryPopen(process_obj)


class _LibraryContext(mp_context.ForkServerContext):
    """The fork-server context whose workers start without the caller's main module."""

    Process = _LibraryProcess


def start_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    """Pool initializer: exit with the process that made the pool, then the caller's initializer.

    A pool worker waits on a queue whose other end it holds itself, so when the run is killed
    (SIGKILL: no cleanup runs) nothing ever wakes it: each would stay for good with its models
    in memory. Its parent is the fork server, not the run, so a parent-death signal would not
    reach it either; a thread here watches the run's pid instead.
    """
    watch_parent(parent)
    if initializer is not None:
        initializer()


def watch_parent(pid: int, poll: float = 1.0) -> threading.Thread:
    """A daemon thread that ends this process (exit code 1) once process `pid` has exited: it
    waits on a pidfd (readable when the process ends), or polls the pid where there is none."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or pid already gone
        fd = None
        if not _alive(pid):
            os._exit(1)

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _alive(pid):
                time.sleep(poll)
        os._exit(1)  # no cleanup: the run that wanted the results is gone

    t = threading.Thread(target=watch, name=f"facesieve-watch-{pid}", daemon=True)
    t.start()
    return t


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_chunk(fn: Callable, batch: list) -> list:
    return [fn(item) for item in batch]
