"""Worker process settings that must be in place before numpy loads: one compute thread, and a
malloc that keeps freed memory for the next image.

The process pool's fork server imports this module first (parallel.PRELOAD), so the settings are
in place when it loads numpy and OpenCV, and every worker forked from it inherits them.

- One BLAS/OpenMP thread: OpenBLAS sizes its thread pool when numpy loads, so setting the
  variables later (in a pool initializer) is too late, and each worker would run two BLAS threads,
  two workers four on two cores.
- glibc malloc: every image allocates and frees arrays of megabytes (decoded pixels, colour
  conversions, resized copies); by default they are mapped and unmapped, or trimmed off the heap,
  each time, and every page is faulted in and zeroed again for the next image (about 600 page
  faults and 1 ms of CPU an image, measured with YuNet + SFace). Serving blocks up to 64 MB from
  the heap and trimming only above 128 MB free keeps the pages; a worker's memory still stays
  bounded by its largest image.

Do not import this module anywhere else: it changes the importing process's environment.
"""

from __future__ import annotations

import ctypes
import os

from facesieve.parallel import MMAP_THRESHOLD, THREAD_VARIABLES, TRIM_THRESHOLD

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)

for _var in THREAD_VARIABLES:
    os.environ[_var] = "1"

try:
    _libc = ctypes.CDLL(None)
    _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    _libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
except (OSError, AttributeError):  # pragma: no cover - not glibc: the allocator's defaults
    pass
