"""The `facesieve` command: a thin shell over the Python API, one module per sub-command.

Errors a user can act on are printed as one line on stderr (traceback only with --debug);
exit code 2 for refused requests and bad usage, 1 for other failures.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from facesieve import __version__
from facesieve.cli.options import Parser, fold_model_args
from facesieve.errors import FacesieveError

EPILOG_MAIN = """\
examples:
  facesieve run photos/ --out cleaned --keep 10        clean a dataset, keep 10 faces per identity
  facesieve run photos/ --out cleaned --detector dlib-hog --embedder dlib
  facesieve run --help                                 every option of one command

Each command caches its work in <out>/.facesieve: re-running it only computes what changed.
"""

# the sub-command modules, in the order `facesieve --help` lists them; each has register(subparsers)
COMMANDS = ("run", "models", "quality", "evaluate", "serve", "video", "train")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="facesieve",
        description="Clean face-recognition training datasets: find duplicates and poor faces, "
        "keep the best subset per identity.",
        epilog=EPILOG_MAIN,
    )
    p.add_argument("--version", action="version", version=f"facesieve {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"facesieve.cli.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fold_model_args(args)  # --detector-weights/--embedder-weights/--device/--det-threshold into the model strings
    except FacesieveError as e:
        print(f"facesieve: error: {e}", file=sys.stderr)
        return e.exit_code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FacesieveError as e:
        if getattr(args, "debug", False):
            raise
        print(f"facesieve: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("facesieve: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line, and how to see more
        if getattr(args, "debug", False):
            raise
        print(f"facesieve: error: {type(e).__name__}: {e} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
