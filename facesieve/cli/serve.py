"""`facesieve serve`: open a run's report as a local review app (overrule decisions, re-apply, start runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  facesieve serve cleaned                      review cleaned/ at http://127.0.0.1:8765/
  facesieve serve cleaned --port 9000 --open   another port, and open a browser tab
  facesieve serve                              no output yet: start a run from the page

The app listens on 127.0.0.1 only, unless --host says otherwise; it answers only requests that name
it in their Host header and come from its own pages, and every change needs the session token that
only the page it serves holds (a new one each start: reload open tabs after a restart). It shows a
dataset's files only when they decode as images and lie inside the dataset (links resolved), and
sends them as images: a page or SVG in a dataset never runs. The run form takes model names from
`facesieve models list`; local weights files are for `facesieve run` on the command line.

Your keep/remove changes are stored in the workspace (overrides.json): "Apply changes" updates the
output and manifest.csv (reason "manual"), and every later `facesieve run` into the same output
applies them again.
"""


def register(subparsers) -> None:
    sp = subparsers.add_parser(
        "serve",
        help="review a run in the browser: change decisions, re-apply, start runs",
        description="Serve CLEANED (the output of `facesieve run`, or its workspace) as a local web app: "
        "the report's galleries, with keep/remove buttons on every face, and a form to start new runs.",
        epilog=EPILOG,
    )
    sp.add_argument("cleaned", type=Path, nargs="?", default=None, metavar="CLEANED",
                    help="output folder of a run (or its workspace); omit to start with a run form")
    sp.add_argument("--workspace", type=Path, default=None, help="workspace folder (default: <CLEANED>/.facesieve)")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to listen on; other than loopback it must also be the name you browse to")
    sp.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    sp.add_argument("--open", action="store_true", help="open the page in the default browser")
    sp.add_argument("--verbose", action="store_true", help="log every request")
    sp.add_argument("--debug", action="store_true", help="show tracebacks")
    sp.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import sys

    from facesieve.errors import UsageError
    from facesieve.serve.app import LOOPBACK, make_server

    try:
        server = make_server(args.cleaned, workspace=args.workspace, host=args.host, port=args.port, quiet=not args.verbose)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    if args.host not in LOOPBACK:
        print(f"facesieve: warning: listening on {args.host}: anyone who can reach it can change decisions", file=sys.stderr)
    print(f"facesieve: reviewing {server.app.out or '(no output yet)'} at {server.url}  (Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
