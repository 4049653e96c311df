"""`facesieve serve`: the report as a local web app that can overrule decisions and start runs.

A small standard-library HTTP server (no web framework to install), bound to 127.0.0.1 unless told
otherwise. What it will do, and nothing more:

- serve the review page, the report's thumbnails and figures, and the dataset's own images, and
  only files listed in the run's manifest (anything else, `..` tricks included, is a 404);
- store a person's keep/remove decisions in the workspace and re-apply them to the output;
- start a run on a folder (in a background thread) and report its progress.

Every request must name this server in its Host header, and a request from a page (Origin header)
must come from this server: a web page elsewhere can neither read nor change anything (403).
POSTs must be JSON, which a cross-site form cannot send.
"""

from __future__ import annotations

import io
import json
import mimetypes
import threading
import time
import traceback
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from facesieve.errors import FacesieveError
from facesieve.overrides import (
    load_overrides,
    pending,
    read_manifest,
    reapply,
    set_overrides,
)
from facesieve.progress import Reporter
from facesieve.workspace import Workspace

MAX_BODY = 1 << 20
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
RUN_FIELDS = {
    "keep": int, "jobs": int, "near_dup_threshold": float, "cross_id_threshold": float, "overlap_threshold": float,
    "detector": str, "embedder": str, "quality": str, "outliers": bool,
}


class NotFound(Exception):
    """Answered with 404, whatever the reason (missing, outside the dataset, malformed)."""


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- live progress of a run


class LiveReporter(Reporter):
    """A quiet Reporter that also keeps each stage's progress where the app can read it."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lock = threading.Lock()
        self.stages: list[dict] = []
        self.current = ""

    @contextmanager
    def stage(self, name: str, total: int | None):
        entry = {"name": name, "done": 0, "total": total or 0, "seconds": 0.0, "finished": False}
        start = time.perf_counter()
        with self.lock:
            self.stages.append(entry)
            self.current = name
        with super().stage(name, total) as advance:

            def tick(n: int = 1) -> None:
                advance(n)
                with self.lock:
                    entry["done"] += n
                    entry["seconds"] = time.perf_counter() - start

            try:
                yield tick
            finally:
                with self.lock:
                    entry["finished"] = True
                    entry["seconds"] = time.perf_counter() - start

    def snapshot(self) -> list[dict]:
        with self.lock:
            out = [dict(s) for s in self.stages]
        for s in out:
            s["seconds"] = round(s["seconds"], 2)
        return out


# ---------------------------------------------------------------- the application state


class ReviewApp:
    """One output folder (and its workspace) under review, plus at most one run in progress."""

    def __init__(self, out: Path | None = None, workspace: Path | None = None):
        self.lock = threading.RLock()
        self.out: Path | None = None
        self.ws: Workspace | None = None
        self.dataset: Path | None = None
        self._paths: set[str] = set()
        self.run_state: dict = {"state": "idle"}
        self._reporter: LiveReporter | None = None
        self._thread: threading.Thread | None = None
        if out is not None or workspace is not None:
            self.open(out, workspace)

    # -- which output
    def open(self, out: Path | None, workspace: Path | None = None) -> None:
        out, ws = resolve_output(out, workspace)
        with self.lock:
            self.out, self.ws = out, Workspace(ws)
            info = self.ws.read_json("facesieve-workspace.json", default={}) or {}
            self.dataset = Path(info["dataset"]) if info.get("dataset") else None
            self._paths = set(read_manifest(out)["path"])

    def require_output(self) -> tuple[Path, Workspace]:
        if self.out is None or self.ws is None:
            raise Refused(409, "no output is open: start a run first")
        return self.out, self.ws

    # -- content
    def data(self) -> dict:
        from facesieve.report.html import report_data

        with self.lock:
            if self.out is None:
                return empty_data()
            return report_data(self.out, self.ws, dataset=self.dataset, app=True)

    def page(self) -> str:
        from facesieve.report.html import render_page

        data = self.data()
        name = Path(data.get("dataset") or "").name or "no dataset yet"
        return render_page(data, title=f"facesieve review: {name}")

    def dataset_file(self, rel: str) -> Path:
        """The dataset file `rel` names, if and only if the manifest lists it."""
        rel = safe_relpath(rel)
        with self.lock:
            if self.dataset is None or rel not in self._paths:
                raise NotFound(rel)
            p = self.dataset / rel
        if not p.is_file():
            raise NotFound(rel)
        return p

    def output_file(self, rel: str, folder: str) -> Path:
        """A file under `<out>/<folder>/` (the report's thumbnails and figures)."""
        rel = safe_relpath(rel)
        with self.lock:
            out = self.out
        if out is None:
            raise NotFound(rel)
        root = (out / folder).resolve()
        p = (root / rel).resolve()
        if root not in p.parents or not p.is_file():
            raise NotFound(rel)
        return p

    # -- changes
    def set_override(self, path: str, action: str) -> dict:
        out, ws = self.require_output()
        if action not in ("keep", "remove", "auto"):
            raise Refused(400, "action must be keep, remove or auto")
        with self.lock:
            if self.running():
                raise Refused(409, "a run is in progress")
            manifest = read_manifest(out)
            row = manifest.index[manifest["path"] == path]
            if not len(row):
                raise Refused(404, f"no such file in the manifest: {path}")
            if manifest.at[row[0], "action"] == "error":
                raise Refused(400, f"{path} could not be read; it cannot be kept or removed")
            overrides = set_overrides(ws, {path: None if action == "auto" else action})
            waiting = pending(manifest, overrides)
        return {"pending": waiting, "n_pending": len(waiting)}

    def apply(self) -> dict:
        from facesieve.report.html import write_report

        out, ws = self.require_output()
        with self.lock:
            if self.running():
                raise Refused(409, "a run is in progress")
            result = reapply(out, ws)
            write_report(out, self.dataset, ws)
        return {"result": result, "data": self.data()}

    # -- runs
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_run(self, params: dict) -> dict:
        from facesieve.config import RunConfig
        from facesieve.pipeline import validate

        with self.lock:
            if self.running():
                raise Refused(409, "a run is already in progress")
            dataset, out = params.get("dataset"), params.get("out")
            if not dataset or not out:
                raise Refused(400, "dataset and output folders are both needed")
            kwargs = {}
            for key, kind in RUN_FIELDS.items():
                if params.get(key) in (None, ""):
                    continue
                try:
                    kwargs[key] = bool(params[key]) if kind is bool else kind(params[key])
                except (TypeError, ValueError):
                    raise Refused(400, f"{key} must be a {kind.__name__}") from None
            config = RunConfig(dataset=Path(dataset).expanduser(), out=Path(out).expanduser(), **kwargs)
            try:
                from facesieve.apply import check_paths

                validate(config)
                check_paths(config.dataset, config.out)
            except FacesieveError as e:
                raise Refused(400, str(e)) from None
            rep = LiveReporter()
            self._reporter = rep
            self.run_state = {"state": "running", "dataset": str(config.dataset), "out": str(config.out),
                              "started": time.time(), "error": ""}
            self._thread = threading.Thread(target=self._run, args=(config, rep), name="facesieve-run", daemon=True)
            self._thread.start()
        return self.run_status()

    def _run(self, config, rep: LiveReporter) -> None:
        from facesieve.pipeline import run

        try:
            run(config, rep)
            with self.lock:
                self.open(config.out, config.workspace)
                self.run_state["state"] = "done"
        except Exception as e:  # noqa: BLE001 - reported to the page, not raised into the server
            with self.lock:
                self.run_state["state"] = "failed"
                self.run_state["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, FacesieveError) else str(e)
                self.run_state["trace"] = traceback.format_exc(limit=5)
        finally:
            with self.lock:
                self.run_state["elapsed"] = round(time.time() - self.run_state.get("started", time.time()), 2)

    def run_status(self) -> dict:
        with self.lock:
            st = {k: v for k, v in self.run_state.items() if k != "trace"}
            if self._reporter is not None:
                st["stages"] = self._reporter.snapshot()
                st["stage"] = self._reporter.current
            if st.get("state") == "running":
                st["elapsed"] = round(time.time() - st["started"], 2)
        return st

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run in progress (if any) ends; for tests and scripts."""
        t = self._thread
        if t is not None:
            t.join(timeout)


def empty_data() -> dict:
    from facesieve import __version__
    from facesieve.report.data import ACTIONS, FACE_FIELDS

    return {"format": 1, "version": __version__, "generated": "", "output": "", "dataset": "", "summary": {},
            "actions": ACTIONS, "reasons": [], "fields": FACE_FIELDS, "identities": [], "cross": [], "overlaps": [],
            "plots": {}, "files_href": "files/", "app": True, "manual": "manual", "n_pending": 0}


def resolve_output(out: Path | None, workspace: Path | None) -> tuple[Path, Path]:
    """(output folder, workspace) from an output folder, or from a workspace (its summary names the output)."""
    from facesieve.errors import UsageError

    if out is not None and Workspace.is_workspace(Path(out)) and workspace is None:
        workspace = Path(out)
        summary = Workspace(workspace).read_json("summary.json", default={}) or {}
        out = Path(summary["output"]) if summary.get("output") else workspace.parent
    if out is None:
        summary = Workspace(Path(workspace)).read_json("summary.json", default={}) or {}
        if not summary.get("output"):
            raise UsageError(f"{workspace} names no output folder; pass the output folder instead")
        out = Path(summary["output"])
    out = Path(out)
    ws = Path(workspace) if workspace is not None else out / ".facesieve"
    if not (out / "manifest.csv").is_file():
        raise UsageError(f"{out} is not a finished facesieve output (no manifest.csv); run `facesieve run` first")
    if not Workspace.is_workspace(ws):
        raise UsageError(f"no facesieve workspace at {ws}; pass --workspace")
    return out.resolve(), ws.resolve()


def safe_relpath(rel: str) -> str:
    """A dataset-relative POSIX path, or NotFound for anything that could leave the folder."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise NotFound(rel)
    parts = rel.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise NotFound(rel)
    return rel


# ---------------------------------------------------------------- HTTP


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: ReviewApp, host: str, port: int, quiet: bool = True):
        self.app = app
        self.quiet = quiet
        super().__init__((host, port), Handler)
        self.bound_host = host
        self.allowed_hosts = allowed_hosts(host, self.server_address[1])

    @property
    def url(self) -> str:
        host = self.bound_host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.server_address[1]}/"


def allowed_hosts(host: str, port: int) -> set[str]:
    names = set(LOOPBACK)
    if host and host not in ("0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    names.discard("::1")  # an IPv6 address appears in a Host header in brackets
    return {f"{n}:{port}" for n in names} | (names if port == 80 else set())


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "facesieve"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    # -- guards
    def _check_origin(self) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.allowed_hosts:
            raise Refused(403, "foreign Host header")
        origin = self.headers.get("Origin")
        if origin is not None:
            o = urlsplit(origin.strip().lower())
            if o.scheme != "http" or o.netloc not in self.server.allowed_hosts:
                raise Refused(403, "foreign Origin header")
        if (self.headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
            raise Refused(403, "cross-site request")

    def _json_body(self) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused(415, "POST bodies must be application/json")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise Refused(400, "bad Content-Length") from None
        if n > MAX_BODY:
            raise Refused(413, "request too large")
        raw = self.rfile.read(n) if n else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise Refused(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "body must be a JSON object")
        return body

    # -- replies
    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj, default=str, allow_nan=False).encode(), "application/json",
                   {"Cache-Control": "no-store"})

    def _file(self, path: Path) -> None:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), ctype, {"Cache-Control": "no-cache"})

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _handle(self, method: str) -> None:
        try:
            self._check_origin()
            raw_path = self.path.split("?", 1)[0].split("#", 1)[0]
            if method in ("GET", "HEAD"):
                self._get(raw_path)
            else:
                self._post(raw_path)
        except NotFound:
            self._error(404, "not found")
        except Refused as e:
            self._error(e.status, str(e))
        except FacesieveError as e:
            self._error(400, str(e))
        except Exception as e:  # noqa: BLE001 - one request failing must not stop the server
            if not self.server.quiet:
                traceback.print_exc()
            self._error(500, f"{type(e).__name__}: {e}")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _get(self, raw: str) -> None:
        app = self.server.app
        if raw in ("/", "/index.html"):
            self._send(200, app.page().encode("utf-8"), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
        elif raw == "/api/data":
            self._json(app.data())
        elif raw == "/api/run":
            self._json(app.run_status())
        elif raw == "/api/overrides":
            _, ws = app.require_output()
            self._json(load_overrides(ws))
        elif raw.startswith("/files/"):
            self._file(app.dataset_file(unquote(raw[len("/files/"):])))
        elif raw.startswith("/preview/"):
            self._send(200, preview_jpeg(app.dataset_file(unquote(raw[len("/preview/"):]))), "image/jpeg",
                       {"Cache-Control": "no-cache"})
        elif raw.startswith("/report_files/"):
            self._file(app.output_file(unquote(raw[len("/report_files/"):]), "report_files"))
        elif raw == "/manifest.csv":
            out, _ = app.require_output()
            self._send(200, (out / "manifest.csv").read_bytes(), "text/csv; charset=utf-8", {"Cache-Control": "no-store"})
        else:
            raise NotFound(raw)

    def _post(self, raw: str) -> None:
        app = self.server.app
        body = self._json_body()
        if raw == "/api/override":
            self._json(app.set_override(str(body.get("path", "")), str(body.get("action", ""))))
        elif raw == "/api/apply":
            self._json(app.apply())
        elif raw == "/api/run":
            self._json(app.start_run(body), 202)
        else:
            raise NotFound(raw)


def preview_jpeg(path: Path, side: int = 720) -> bytes:
    """Any image facesieve can read (PGM, 16-bit, CMYK, EXIF-rotated...) as a JPEG a browser shows."""
    import numpy as np
    from PIL import Image

    from facesieve.imaging import load_rgb

    try:
        img = Image.fromarray(np.ascontiguousarray(load_rgb(path)))
    except Exception:  # noqa: BLE001 - whatever the decoder says, there is nothing to show
        raise NotFound(str(path)) from None
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=88)
    return buf.getvalue()


def make_server(out: Path | None = None, *, workspace: Path | None = None, host: str = "127.0.0.1", port: int = 8765,
                quiet: bool = True) -> ReviewServer:
    """A server ready to `serve_forever()` (port 0: any free port; see `.url`)."""
    return ReviewServer(ReviewApp(out, workspace), host, port, quiet=quiet)
