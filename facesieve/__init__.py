"""facesieve: clean face-recognition training datasets.

The public API, for scripts and notebooks (no ``if __name__ == "__main__"`` guard needed)::

    import facesieve
    result = facesieve.run("photos", out="cleaned", keep=10)     # what `facesieve run` does
    es = facesieve.prepare("photos")                              # faces + embeddings per image
    scores = facesieve.quality_scores("photos", method="image")   # what `facesieve quality` does
    report = facesieve.evaluate.verify("photos")                  # what `facesieve evaluate verify` does

The names are imported on first use (module ``__getattr__``): ``import facesieve`` itself loads no
numpy, OpenCV or ONNX Runtime, so the process-pool workers, which import facesieve's modules, start
cheaply.
"""

__version__ = "0.1.0"

# public name -> the module that holds it, imported when the name is first looked up
_LAZY = {
    "run": "facesieve.api",
    "prepare": "facesieve.api",
    "quality_scores": "facesieve.api",
    "RunConfig": "facesieve.config",
    "RunResult": "facesieve.pipeline",
    "EvalSet": "facesieve.evaluate.run",
}
_SUBMODULES = ("evaluate",)

__all__ = ["EvalSet", "RunConfig", "RunResult", "__version__", "evaluate", "prepare", "quality_scores", "run"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
