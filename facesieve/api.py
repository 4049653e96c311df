"""The functions `import facesieve` offers (facesieve/__init__.py re-exports them lazily).

Each is a thin, documented entry into what the CLI runs, with the same caches: `run` is
`facesieve run`, `prepare` the scan -> faces -> embed (-> quality) stages that `facesieve evaluate`
reads, `quality_scores` is `facesieve quality`. They work from a plain script or a notebook with no
``if __name__ == "__main__"`` guard: the process pool's workers never re-run the caller's script
(facesieve/parallel.py).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path


def _reporter(progress: bool):
    from facesieve.progress import Reporter

    return Reporter(quiet=not progress)


def _config(dataset, out, options: dict):
    """A RunConfig from keyword options, refusing an unknown one by name (with the valid ones)."""
    from facesieve.config import RunConfig

    known = {f.name for f in fields(RunConfig)} - {"dataset", "out", "extra"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; RunConfig takes: {', '.join(sorted(known))}")
    return RunConfig(dataset=Path(dataset), out=Path(out), **options)


def run(dataset, out, keep: int | None = None, *, progress: bool = False, **options):
    """Clean `dataset` (one folder per identity) into `out`, exactly as `facesieve run` does.

    `keep`: faces kept per identity (None: every face that passes the checks). `options`: any
    other `facesieve.RunConfig` field (detector="dlib-hog", embedder="dlib", quality="image",
    duplicates="copies", jobs=2, mode="hardlink", ...). `progress=True` shows the stage bars.
    The input is never modified; a re-run reuses the workspace (`out/.facesieve`).
    Returns a RunResult: `.manifest` (one row per file: action, reason, ...), `.summary`,
    `.selection`.

    Example (from the repository root; no __main__ guard needed)::

        >>> import facesieve
        >>> result = facesieve.run("sample/faces", out="/tmp/cleaned", keep=3)
        >>> result.summary["kept"], result.summary["identities"]
        (12, 4)
        >>> result.manifest.query("action == 'remove'")[["path", "reason"]].head()
    """
    from facesieve.pipeline import run as run_pipeline

    return run_pipeline(_config(dataset, out, dict(options, keep=keep)), _reporter(progress))


def prepare(dataset, *, detector: str = "yunet", embedder: str = "sface", qualities=(), workspace=None,
            jobs: int | None = None, progress: bool = False, **options):
    """Detect, align and embed every image of `dataset` (and score it with each quality method in
    `qualities`); return an EvalSet: one row per image (`paths`, `identities`, `status`) with its
    unit vector (`unit`, zero rows where no face was found) and `quality[method]` scores.

    These are the stages `facesieve run` starts with, without any decision. Everything is cached in
    `workspace` (default: one folder per dataset under $FACESIEVE_HOME/eval, shared with
    `facesieve evaluate`; pass a run's `out/.facesieve` to reuse its faces), so a second call
    calls no model. `options`: face_policy, aligned, batch_size.

    Example::

        >>> import facesieve
        >>> es = facesieve.prepare("sample/faces", qualities=["image"])
        >>> es.unit.shape, int(es.valid.sum())
        ((27, 128), 27)
        >>> es.unit[0] @ es.unit[1]        # cosine similarity of the first two images
    """
    from facesieve.evaluate.run import load_eval_set

    return load_eval_set(dataset, detector=detector, embedder=embedder, qualities=tuple(qualities), workspace=workspace,
                         jobs=jobs, reporter=_reporter(progress), **options)


def quality_scores(dataset, method: str = "offline", *, workspace=None, progress: bool = False, **options):
    """Every file's quality by `method` (any `facesieve quality --method`: offline, image,
    ediffiqa:T, sdd-fiqa, onnx:PATH, ...), without selecting anything: what `facesieve quality`
    writes, as a DataFrame (path, identity, quality, the method's components, status, reason;
    quality is NaN where no face was found). `.attrs["summary"]` holds the command's summary.

    Cached like `prepare` (same default workspace). `options`: detector, embedder, face_policy,
    aligned, jobs, batch_size, ... (RunConfig fields).

    Example::

        >>> import facesieve
        >>> q = facesieve.quality_scores("sample/faces", method="image")
        >>> q.sort_values("quality").head(3)[["path", "quality"]]   # the worst three
    """
    from facesieve.evaluate.run import default_workspace
    from facesieve.quality.scoring import score_dataset

    ws = Path(workspace) if workspace is not None else default_workspace(dataset)
    if not Path(dataset).is_dir():
        from facesieve.errors import UsageError

        raise UsageError(f"dataset folder not found: {dataset}")
    config = _config(dataset, ws, dict(options, workspace=ws, quality=method, report=False))
    scored = score_dataset(config, _reporter(progress))
    table = scored.table.reset_index(drop=True)
    table.attrs["summary"] = scored.summary
    return table
