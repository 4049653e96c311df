"""Optional pieces of the test environment (torch, Ray). A test that needs a missing piece is
skipped on a developer's machine; where CI says the piece must be there (FACESIEVE_REQUIRE_<PIECE>=1,
exported by .ci/run) the same test fails instead, so CI's log lists no skipped test.

Mark a test `@pytest.mark.requires("torch")` (conftest.py checks the mark before the test's fixtures
run), or call `require("ray")` where a whole module needs the piece at import time.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

PIECES = {  # piece: (module, the flag CI sets, how to install it)
    "torch": ("torch", "FACESIEVE_REQUIRE_TORCH", 'pip install "facesieve[torch]"'),
    "ray": ("ray", "FACESIEVE_REQUIRE_RAY", 'pip install "facesieve[ray]"'),
}


def optional(piece: str) -> ModuleType | None:
    """The piece's module, or None when it cannot be imported (for module-level definitions)."""
    try:
        return importlib.import_module(PIECES[piece][0])
    except ImportError:
        return None


def require(piece: str) -> ModuleType:
    """The piece's module; when it is missing: a failure under its CI flag, a skip otherwise."""
    module, flag, hint = PIECES[piece]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        reason = f"{module} is not importable ({e}): {hint}"
        if os.environ.get(flag) == "1":
            pytest.fail(f"{reason}; {flag}=1 says it must be installed here", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
