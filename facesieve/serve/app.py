"""`facesieve serve`: the report as a local web app that can overrule decisions and start runs.

A small standard-library HTTP server (no web framework to install), bound to 127.0.0.1 unless told
otherwise. What it will do, and nothing more:

- serve the review page, the report's thumbnails, and the dataset's own images: only files listed
  in the run's manifest whose real path (every link resolved at the time of the request) lies
  inside the dataset and that decode as images; they go out as images (a fixed image type from their content, or
  re-encoded as PNG), never with a type of their own, so a dataset's `notes.html` or `evil.svg` is
  a 404 and no file of a dataset can run script at the app's origin;
- store a person's keep/remove decisions in the workspace and re-apply them to the output;
- start a run on a folder (in a background thread) and report its progress.

Whom it answers: every request must name this server in its Host header (DNS rebinding), a request
from a page (Origin) must come from this server, not from another port of 127.0.0.1 (CSRF), and
every POST must carry the session token: random per server start, written only into the page this
server sends (which no other origin can read), sent back in the X-Facesieve-Token header. POSTs
must be JSON. Every response carries a Content-Security-Policy (the page: only its own script, by
hash; everything else: nothing at all, sandboxed) and X-Content-Type-Options: nosniff.

Robustness: bodies need a plain Content-Length up to 1 MiB; sockets time out (a half-sent request
cannot hold a thread); at most MAX_THREADS requests at once, the rest wait in a listen backlog of
BACKLOG; malformed JSON (bad UTF-8, deep nesting, NaN or 1e309) is a 400 that names no exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import stat
import threading
import time
import traceback
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from facesieve.errors import FacesieveError
from facesieve.lock import folder_lock
from facesieve.overrides import (
    FIXED_ACTIONS,
    load_overrides,
    pending,
    read_manifest,
    reapply,
    set_overrides,
)
from facesieve.progress import Reporter
from facesieve.workspace import Workspace

MAX_BODY = 1 << 20
MAX_FILE = 256 << 20  # a dataset file larger than this is not served (no photo is)
MAX_SIDE = 4096  # re-encoded images (formats a browser cannot show) are scaled down to this
MAX_THREADS = 64  # requests handled at once; more wait in the backlog
BACKLOG = 128  # listen queue: a page's burst of requests (and 24 concurrent overrides) all get in
TIMEOUT = 15.0  # seconds a socket may stay silent, mid-request or idle between requests
TOKEN_HEADER = "X-Facesieve-Token"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
WEB_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}
# what any response but the page may do when a browser renders it: nothing
CSP_NONE = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
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
        self.token = secrets.token_urlsafe(32)  # this server's session: only its own page knows it
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
        """The review page, with the session token in its data (and nowhere else)."""
        from facesieve.report.html import render_page

        data = dict(self.data(), token=self.token)
        name = Path(data.get("dataset") or "").name or "no dataset yet"
        return render_page(data, title=f"facesieve review: {name}")

    def dataset_file(self, rel: str) -> Path:
        """The real path of the dataset file `rel` names, if the manifest lists it and it lies inside
        the dataset once every link is resolved (a link out, even one planted after the run, is not)."""
        rel = safe_relpath(rel)
        with self.lock:
            if self.dataset is None or rel not in self._paths:
                raise NotFound(rel)
            root = self.dataset
        return real_inside(root, rel)

    def output_file(self, rel: str, folder: str) -> Path:
        """A file under `<out>/<folder>/` (the report's thumbnails)."""
        rel = safe_relpath(rel)
        with self.lock:
            out = self.out
        if out is None:
            raise NotFound(rel)
        return real_inside(out / folder, rel)

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
            if manifest.at[row[0], "action"] in FIXED_ACTIONS:
                raise Refused(400, f"{path} is decided by the file itself (unreadable or not an image); it cannot be kept or removed")
            overrides = set_overrides(ws, {path: None if action == "auto" else action})
            waiting = pending(manifest, overrides)
        return {"pending": waiting, "n_pending": len(waiting)}

    def apply(self) -> dict:
        from facesieve.report.html import write_report

        out, ws = self.require_output()
        with self.lock:
            if self.running():
                raise Refused(409, "a run is in progress")
            held = ExitStack()
            try:
                held.enter_context(folder_lock(out))
            except FacesieveError as e:  # a command-line run is writing this output now
                raise Refused(409, str(e)) from None
            with held:
                result = reapply(out, ws)
                write_report(out, self.dataset, ws)
        return {"result": result, "data": self.data()}

    # -- runs
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_run(self, params: dict) -> dict:
        from facesieve.config import RunConfig
        from facesieve.preparation import validate

        with self.lock:
            if self.running():
                raise Refused(409, "a run is already in progress")
            dataset, out = params.get("dataset"), params.get("out")
            if not dataset or not out:
                raise Refused(400, "dataset and output folders are both needed")
            if not isinstance(dataset, str) or not isinstance(out, str) or "\x00" in dataset + out:
                raise Refused(400, "dataset and output must be folder names")
            kwargs = run_options(params)
            config = RunConfig(dataset=Path(dataset).expanduser(), out=Path(out).expanduser(), **kwargs)
            try:
                from facesieve.apply import check_paths

                keys = validate(config)
                check_paths(config.dataset, config.out)
            except FacesieveError as e:
                raise Refused(400, str(e)) from None
            rep = LiveReporter()
            self._reporter = rep
            self.run_state = {"state": "running", "dataset": str(config.dataset), "out": str(config.out),
                              "started": time.time(), "error": ""}
            self._thread = threading.Thread(target=self._run, args=(config, rep, keys), name="facesieve-run", daemon=True)
            self._thread.start()
        return self.run_status()

    def _run(self, config, rep: LiveReporter, keys) -> None:
        from facesieve.pipeline import run

        try:
            run(config, rep, keys)
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


def run_options(params: dict) -> dict:
    """RunConfig options from the run form, each checked for its type (finite numbers, no bools for
    counts) and the models by catalogue name only (see `form_model`)."""
    kwargs: dict = {}
    for key, kind in RUN_FIELDS.items():
        v = params.get(key)
        if v is None or v == "":
            continue
        if kind is bool:
            if not isinstance(v, bool):
                raise Refused(400, f"{key} must be true or false")
            kwargs[key] = v
        elif kind is int:
            ok = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and re.fullmatch(r"\s*\d{1,9}\s*", v))
            if not ok or not 0 <= int(v) < 10**9:
                raise Refused(400, f"{key} must be a whole number")
            kwargs[key] = int(v)
        elif kind is float:
            try:
                f = float(v) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else math.nan
            except ValueError:
                f = math.nan
            if not math.isfinite(f):
                raise Refused(400, f"{key} must be a finite number")
            kwargs[key] = f
        elif not isinstance(v, str):
            raise Refused(400, f"{key} must be text")
        else:
            kwargs[key] = form_model(key, v)
    return kwargs


def form_model(key: str, value: str) -> str:
    """A model named in the run form: a catalogue name, nothing that points at a file.

    The CLI also takes NAME:PATH and NAME:{"weights": PATH} (and quality methods onnx:PATH and
    ers:DIR), but a path typed into a web form is one a page could have chosen: any file on the
    disk, a PyTorch checkpoint among them (a pickle: loading it runs code). So the form takes the
    names `facesieve models list` shows (their weights come from the model cache or the wheel) and,
    for quality, registered method names joined by "+" with eDifFIQA's size letter; local weights
    files stay a command-line option.
    """
    from facesieve.config import DETECTORS, EMBEDDERS

    v = value.strip().lower()
    if key in ("detector", "embedder"):
        names = DETECTORS if key == "detector" else EMBEDDERS
        if v not in names:
            raise Refused(400, f"{key} must be one of {', '.join(names)} (local weights files: use the command line)")
        return v
    from facesieve.quality.registry import available

    methods = set(available()) - {"onnx"}
    for part in v.split("+"):
        name, sep, arg = part.strip().partition(":")
        if name not in methods or (sep and not (name == "ediffiqa" and arg in ("l", "m", "s", "t"))):
            raise Refused(400, f"quality must be made of {', '.join(sorted(methods))} (files: use the command line)")
    return re.sub(r"ediffiqa:([lmst])", lambda m: "ediffiqa:" + m.group(1).upper(), v)


def real_inside(root: Path, rel: str) -> Path:
    """The real path of root/rel (every link resolved), or NotFound when that is not inside root's
    own real path."""
    base = Path(os.path.realpath(root))
    p = Path(os.path.realpath(base / rel))
    if base not in p.parents:
        raise NotFound(rel)
    return p


@contextmanager
def open_real(real: Path):
    """(a path that reads the opened file, its descriptor) for `real`, a path `real_inside` gave:
    opened without following a last link and, on Linux, checked through /proc to be that very path
    after opening, so a link swapped in after the check is caught too. Regular files only."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block
    try:
        fd = os.open(real, flags)
    except OSError:
        raise NotFound(str(real)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            raise NotFound(str(real))
        proc = Path(f"/proc/self/fd/{fd}")
        if proc.is_symlink():
            if os.readlink(proc) != str(real):
                raise NotFound(str(real))
            yield proc, fd
        else:
            yield real, fd
    finally:
        os.close(fd)


def image_reply(path: Path, fd: int) -> tuple[bytes, str]:
    """(body, Content-Type) of a file shown as an image: a file that decodes (imaging.load_rgb, the
    pipeline's own decoder) in a format browsers show goes out as its own bytes under that format's
    type, found from its content; one that decodes in another format (PGM, TIFF, 16-bit...) is
    re-encoded as PNG; anything else is NotFound. The type never comes from the file's name."""
    from PIL import Image

    from facesieve.imaging import HEAD_BYTES, DecodeError, load_rgb, sniff_bytes

    try:
        rgb = load_rgb(path)
    except DecodeError:
        raise NotFound(str(path)) from None
    ctype = WEB_TYPES.get(sniff_bytes(os.pread(fd, HEAD_BYTES, 0)) or "")
    if ctype:
        with os.fdopen(os.dup(fd), "rb") as f:
            f.seek(0)
            return f.read(MAX_FILE), ctype
    img = Image.fromarray(rgb)
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=3)
    return buf.getvalue(), "image/png"


def strict_json(raw: bytes):
    """JSON from a request body, or Refused(400): bad UTF-8, nesting too deep for the parser, NaN,
    Infinity and numbers that overflow to them (1e309) are all refused, without the parser's words."""

    def no_constant(name: str):
        raise ValueError(name)

    def finite(text: str) -> float:
        f = float(text)
        if not math.isfinite(f):
            raise ValueError(text)
        return f

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constant, parse_float=finite)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Refused(400, "body is not valid JSON") from None


# ---------------------------------------------------------------- HTTP


class ReviewServer(ThreadingHTTPServer):
    """At most `max_threads` requests at once (each socket times out after `timeout` seconds of
    silence); connections beyond that wait in the listen backlog, and one that still finds no free
    thread after `timeout` seconds is answered 503."""

    daemon_threads = True
    block_on_close = False  # Ctrl-C must not wait for a browser's idle keep-alive connections
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, app: ReviewApp, host: str, port: int, quiet: bool = True, *, timeout: float = TIMEOUT,
                 max_threads: int = MAX_THREADS):
        self.app = app
        self.quiet = quiet
        self.timeout_s = timeout
        self._slots = threading.BoundedSemaphore(max_threads)
        super().__init__((host, port), Handler)
        self.bound_host = host
        self.allowed_hosts = allowed_hosts(host, self.server_address[1])

    @property
    def url(self) -> str:
        host = self.bound_host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.server_address[1]}/"

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(timeout=self.timeout_s):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-request is not news; --verbose shows it anyway."""
        if not self.quiet:
            super().handle_error(request, client_address)


def allowed_hosts(host: str, port: int) -> set[str]:
    names = set(LOOPBACK)
    if host and host not in ("0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    names.discard("::1")  # an IPv6 address appears in a Host header in brackets
    return {f"{n}:{port}" for n in names} | (names if port == 80 else set())


def page_csp(html: str) -> str:
    """The page's policy: only the page's own inline scripts run (by their sha256; the JSON data
    block is not a script), it talks only to this server, and no one may frame it. Styles may be
    inline: the page sets widths through style attributes, and a style cannot run code."""
    scripts = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode("utf-8")).digest()).decode() + "'"
        for m in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    ) or "'none'"
    return (f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; "
            "base-uri 'none'; object-src 'none'")


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "facesieve"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # applied to the socket by StreamRequestHandler.setup
        super().setup()

    def log_message(self, fmt: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    def end_headers(self) -> None:
        """Every response, send_error's included, gets a policy and nosniff."""
        self.send_header("Content-Security-Policy", getattr(self, "_csp", None) or CSP_NONE)
        self.send_header("X-Content-Type-Options", "nosniff")
        self._csp = None
        super().end_headers()

    # -- guards
    def _check_origin(self) -> None:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].strip().lower() not in self.server.allowed_hosts:
            raise Refused(403, "foreign Host header")
        origin = self.headers.get("Origin")
        if origin is not None:
            o = urlsplit(origin.strip().lower())
            if o.scheme != "http" or o.netloc not in self.server.allowed_hosts:
                raise Refused(403, "foreign Origin header")
        site = (self.headers.get("Sec-Fetch-Site") or "").lower()
        if site == "cross-site" or (self.command == "POST" and site not in ("", "same-origin")):
            raise Refused(403, "request from another site or port")

    def _check_token(self) -> None:
        sent = (self.headers.get(TOKEN_HEADER) or "").strip()
        if not hmac.compare_digest(sent.encode(), self.server.app.token.encode()):
            raise Refused(403, f"missing or wrong {TOKEN_HEADER}: reload the page")

    def _body_length(self) -> int:
        if self.headers.get("Transfer-Encoding") is not None:
            raise Refused(411, "send a Content-Length, not a chunked body")
        values = self.headers.get_all("Content-Length") or []
        if len(values) > 1 or (values and not re.fullmatch(r"\d+", values[0].strip())):
            raise Refused(400, "bad Content-Length")
        text = values[0].strip().lstrip("0") if values else ""
        if len(text) > 12 or int(text or 0) > MAX_BODY:
            raise Refused(413, "request too large")
        return int(text or 0)

    def _json_body(self) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused(415, "POST bodies must be application/json")
        n = self._body_length()
        try:
            raw = self.rfile.read(n) if n else b"{}"
        except (TimeoutError, OSError):
            raise Refused(408, "the request body did not arrive in time") from None
        if len(raw) < n:
            raise Refused(400, "the request body is shorter than its Content-Length")
        self._body_read = True
        body = strict_json(raw or b"{}")
        if not isinstance(body, dict):
            raise Refused(400, "body must be a JSON object")
        return body

    # -- replies
    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None, csp: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        if not self._body_read:  # an unread body must not be taken for the next request
            self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self._csp = csp
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj, default=str, allow_nan=False).encode(), "application/json",
                   {"Cache-Control": "no-store"})

    def _image(self, real: Path, preview: bool = False) -> None:
        with open_real(real) as (path, fd):
            body, ctype = (preview_jpeg(path), "image/jpeg") if preview else image_reply(path, fd)
        self._send(200, body, ctype, {"Cache-Control": "no-cache"})

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _handle(self, method: str) -> None:
        self._body_read = method != "POST" and not self._has_body()
        try:
            self._check_origin()
            raw_path = self.path.split("?", 1)[0].split("#", 1)[0]
            if method in ("GET", "HEAD"):
                self._get(raw_path)
            else:
                self._check_token()
                self._post(raw_path)
        except NotFound:
            self._error(404, "not found")
        except Refused as e:
            self._error(e.status, str(e))
        except FacesieveError as e:
            self._error(400, str(e))
        except Exception:  # noqa: BLE001 - one request failing must not stop the server; its text stays here
            if not self.server.quiet:
                traceback.print_exc()
            self._error(500, "internal error (run `facesieve serve --verbose` to see it)")

    def _has_body(self) -> bool:
        return self.headers.get("Transfer-Encoding") is not None or (self.headers.get("Content-Length") or "0").strip() != "0"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _get(self, raw: str) -> None:
        app = self.server.app
        if raw in ("/", "/index.html"):
            html = app.page()
            self._send(200, html.encode("utf-8"), "text/html; charset=utf-8", {"Cache-Control": "no-store"}, csp=page_csp(html))
        elif raw == "/api/data":
            self._json(app.data())
        elif raw == "/api/run":
            self._json(app.run_status())
        elif raw == "/api/overrides":
            _, ws = app.require_output()
            self._json(load_overrides(ws))
        elif raw.startswith(("/files/", "/preview/")):
            prefix, _, rel = raw[1:].partition("/")
            self._image(app.dataset_file(unquote(rel)), preview=prefix == "preview")
        elif raw.startswith("/report_files/"):
            self._image(app.output_file(unquote(raw[len("/report_files/"):]), "report_files"))
        elif raw == "/manifest.csv":
            out, _ = app.require_output()
            self._send(200, (out / "manifest.csv").read_bytes(), "text/csv; charset=utf-8",
                       {"Cache-Control": "no-store", "Content-Disposition": 'attachment; filename="manifest.csv"'})
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
                quiet: bool = True, timeout: float = TIMEOUT, max_threads: int = MAX_THREADS) -> ReviewServer:
    """A server ready to `serve_forever()` (port 0: any free port; see `.url`)."""
    return ReviewServer(ReviewApp(out, workspace), host, port, quiet=quiet, timeout=timeout, max_threads=max_threads)
