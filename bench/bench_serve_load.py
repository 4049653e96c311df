"""The review app under load: N half-sent requests (how many server threads they hold) and 24
overrides posted at the same instant, T times (how many are lost). Runs against whichever facesieve
PYTHONPATH points at, so an old tree and a new one can be compared in one sitting:

    python bench/bench_serve_load.py                          # this tree
    PYTHONPATH=/path/to/old/tree python bench/bench_serve_load.py

A small output is made first (three essex identities of ../shared/data, run into a temporary folder).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from facesieve.cli import main as facesieve
from facesieve.serve.app import make_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "essex_faces94_19"


def half_sent(port: int, token: str, n: int) -> list[socket.socket]:
    """n connections that never finish their request: half POST bodies and half header blocks."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(f"POST /api/override HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                  f"X-Facesieve-Token: {token}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\n{{".encode()
                  if i % 2 else f"GET /api/run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        socks.append(s)
    return socks


def burst(port: int, token: str, paths: list[str], action: str) -> int:
    """Post one override per path, all released at once; how many did not come back 200."""
    gate, status = threading.Barrier(len(paths)), {}

    def one(p: str) -> None:
        gate.wait()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", "/api/override", json.dumps({"path": p, "action": action}),
                      {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}", "X-Facesieve-Token": token})
            status[p] = c.getresponse().status
        except OSError:
            status[p] = -1

    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(v != 200 for v in status.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half-sent", type=int, default=300, help="half-sent requests (default: 300)")
    ap.add_argument("--trials", type=int, default=5, help="bursts of 24 overrides (default: 5)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    try:
        for ident in ("anpage", "asamma", "9336923"):
            shutil.copytree(SHARED / ident, tmp / "data" / ident)
        out = tmp / "out"
        assert facesieve(["run", str(tmp / "data"), "--out", str(out), "--jobs", "2", "--quality", "image",
                     "--quiet"]) == 0
        server = make_server(out, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port, token = server.server_address[1], getattr(server.app, "token", "")
        base = threading.active_count()
        socks = half_sent(port, token, args.half_sent)
        time.sleep(2)
        print(f"{args.half_sent} half-sent requests: {threading.active_count() - base} server threads after 2 s")
        for s in socks:
            s.close()
        time.sleep(1)
        manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
        paths = list(manifest[manifest["action"].isin(["keep", "remove"])]["path"][:24])
        lost = sum(burst(port, token, paths, "keep" if t % 2 == 0 else "remove") for t in range(args.trials))
        print(f"{len(paths)} concurrent overrides x {args.trials}: {lost} of {len(paths) * args.trials} not applied")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
