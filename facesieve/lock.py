"""One run at a time per output folder (and workspace): an exclusive lock held for the whole run.

Two runs writing one output at once interleave their parts, their placed files and their
manifest; the second one would also report success for an output that holds only one of them.
The lock is an advisory `flock` on a hidden file in the folder: the kernel drops it when the
holder exits, however it exits (SIGKILL included), so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from facesieve.errors import UsageError

LOCK_NAME = ".facesieve-lock"


@contextmanager
def folder_lock(folder: Path, what: str = "output folder") -> Iterator[None]:
    """Hold the lock of `folder` (created if missing) for the block; refuse at once (exit 2) when
    another process holds it, naming that process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise UsageError(f"another facesieve run (pid {holder}) is using the {what} {folder}; wait for it to "
                             "finish, or choose another folder") from None
        held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)  # who holds it, for the message above
        yield
    finally:
        if held:
            os.ftruncate(fd, 0)  # the same (empty) file after every finished run
        os.close(fd)  # releases the lock


@contextmanager
def run_lock(out: Path, workspace: Path | None = None) -> Iterator[None]:
    """The output folder's lock, and the workspace's too when it lies elsewhere."""
    with ExitStack() as stack:
        stack.enter_context(folder_lock(out))
        if workspace is not None:
            w, o = Path(workspace).resolve(), Path(out).resolve()
            if w != o and o not in w.parents:
                stack.enter_context(folder_lock(Path(workspace), "workspace"))
        yield
