"""Every quality method by name: the one table that `make_quality` builds from and that `--quality`'s
help is written from.

Adding a method is one module holding its scorer (the interface is in base.py; it does not import
this file) and one row in METHODS. A row names its builder as "module:attribute", imported only
when the method is asked for, so listing the methods loads no model code (nor torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the table itself stays free of numpy/pandas/scipy: `--help` reads it
    from facesieve.quality.base import QualityScorer
    from facesieve.quality.rank_average import RankAverage

DEFAULT = "offline"


@dataclass(frozen=True)
class Method:
    """One quality method. `arg`: what may follow "name:" (then the builder is called with the whole
    name, e.g. "ers:DIR"); None: the builder takes no argument. `arg_required`: the part after ":"
    is not optional."""

    name: str
    builder: str  # "module:attribute" inside facesieve.quality
    summary: str
    arg: str | None = None
    arg_required: bool = False

    @property
    def usage(self) -> str:
        """How the name is written: offline, ers[:DIR], onnx:PATH."""
        if self.arg is None:
            return self.name
        return f"{self.name}:{self.arg}" if self.arg_required else f"{self.name}[:{self.arg}]"

    def factory(self) -> Callable[[str], QualityScorer]:
        module, _, attr = self.builder.partition(":")
        build = getattr(importlib.import_module(f"facesieve.quality.{module}"), attr)
        return build if self.arg is not None else (lambda name: build())


METHODS: tuple[Method, ...] = (
    Method("offline", "offline:OfflineQuality", "embedding norm x noise x blockiness x image measures, no download"),
    Method("offline-full", "offline:OfflineFullQuality", "perturbation robustness instead of the norm (3 more embeddings a face)"),
    Method("image", "image:ImageQuality", "image measures only: sharpness, exposure, contrast, size, yaw (no embedder)"),
    Method("robustness", "robustness:Robustness", "embedding stability under flip and noise"),
    Method("sdd-fiqa", "sddfiqa:SddFiqa", "SDD-FIQA pseudo-labels from the run's embeddings (whole dataset)"),
    Method("ers", "ers:make_ers", "embedding recognizability: distance from unrecognizable faces", arg="DIR"),
    Method("ediffiqa", "ediffiqa:make_ediffiqa", "the eDifFIQA model (facesieve models fetch ediffiqa-t)", arg="L|M|S|T"),
    Method("onnx", "ediffiqa:make_onnx_quality", "a quality regressor .onnx with eDifFIQA(T)'s input", arg="PATH",
           arg_required=True),
    Method("uniform", "uniform:Uniform", "every face weighs the same (FaceDuplicationFilter)"),
)

_BY_NAME = {m.name: m for m in METHODS}
_added: dict[str, Callable[[str], QualityScorer]] = {}  # methods registered at run time (plug-ins, tests)


def register(prefix: str):
    """Add a method at run time: a factory for names equal to `prefix` or starting with `prefix:`."""

    def deco(factory):
        _added[prefix] = factory
        return factory

    return deco


def unregister(prefix: str) -> None:
    _added.pop(prefix, None)


def available() -> list[str]:
    return sorted({*_BY_NAME, *_added})


def make_quality(name: str) -> QualityScorer:
    """The scorer for a method name; "a+b" is the rank average of methods a and b."""
    base = name.split(":", 1)[0]
    if "+" in base:
        return make_rank_average(name)
    if base in _added:
        return _added[base](name)
    if base not in _BY_NAME:
        raise ValueError(f"unknown quality method {name!r}; choose from {', '.join(available())}")
    return _BY_NAME[base].factory()(name)


def make_rank_average(name: str) -> RankAverage:
    """Scorer for "a+b[+c...]": every part a method name."""
    from facesieve.quality.rank_average import RankAverage

    names = [p.strip() for p in name.split("+")]
    if any(not n for n in names):
        raise ValueError(f"empty method in {name!r}; write e.g. offline+sdd-fiqa")
    return RankAverage([make_quality(n) for n in names], names)


def help_text() -> str:
    """The methods as `--quality` help lists them, from the table."""
    names = [f"{m.usage} (default)" if m.name == DEFAULT else m.usage for m in METHODS]
    return ", ".join(names) + ", or a rank average a+b (docs/quality.md)"


def describe() -> str:
    """One line per method: its usage and what it measures (for a help epilog)."""
    width = max(len(m.usage) for m in METHODS)
    return "\n".join(f"  {m.usage:<{width}}  {m.summary}{' (default)' if m.name == DEFAULT else ''}" for m in METHODS)
