"""One string names a model and how to run it, so it can travel to worker processes and into cache keys.

Workers build their models from `RunConfig.detector` / `RunConfig.embedder` alone, so those strings
carry everything a model needs: ``NAME``, ``NAME:PATH`` (a local weights file, the short form a user
types, e.g. ``arcface:/models/r100.onnx``) or the canonical ``NAME:{json}`` with the keys
``weights``, ``device`` and ``threshold`` (detectors' score threshold). A plain name stays a plain
name, so the defaults' cache keys never change.

This module only parses and writes the strings (facesieve/cli/options.py folds the command-line
options into them); what a name means (its weights, its cache identity) is the catalogue's, facesieve.models.zoo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from facesieve.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
_KEYS = ("weights", "device", "threshold")


@dataclass(frozen=True)
class ModelSpec:
    """A model by name, with an optional local weights file, device and score threshold."""

    name: str
    weights: str | None = None
    device: str = "auto"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise UsageError(f"bad model name {self.name!r}")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose from {', '.join(DEVICES)}")
        if self.threshold is not None and not (0.0 <= float(self.threshold) <= 1.0):
            raise UsageError(f"detection threshold must be between 0 and 1, got {self.threshold}")

    @property
    def text(self) -> str:
        """The canonical string: the bare name when every option has its default."""
        opts = {}
        if self.weights is not None:
            opts["weights"] = str(self.weights)
        if self.device != "auto":
            opts["device"] = self.device
        if self.threshold is not None:
            opts["threshold"] = float(self.threshold)
        return self.name if not opts else f"{self.name}:{json.dumps(opts, sort_keys=True, separators=(',', ':'))}"

    def __str__(self) -> str:
        return self.text


def parse_spec(text: str | ModelSpec) -> ModelSpec:
    """``NAME``, ``NAME:PATH`` or ``NAME:{json}`` -> ModelSpec (the name is lower-cased)."""
    if isinstance(text, ModelSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"empty model name: {text!r}")
    name, sep, rest = text.strip().partition(":")
    name = name.strip().lower()
    if not sep or not rest:
        return ModelSpec(name)
    if rest.lstrip().startswith("{"):
        try:
            opts = json.loads(rest)
        except ValueError as e:
            raise UsageError(f"bad model options in {text!r}: {e}") from None
        unknown = set(opts) - set(_KEYS)
        if unknown:
            raise UsageError(f"unknown model options {sorted(unknown)} in {text!r}; known: {', '.join(_KEYS)}")
        thr = opts.get("threshold")
        return ModelSpec(name, opts.get("weights"), opts.get("device", "auto"), None if thr is None else float(thr))
    return ModelSpec(name, weights=rest)


def spec_name(text: str | ModelSpec) -> str:
    """Just the model's name."""
    return parse_spec(text).name


def merge_spec(text: str | ModelSpec, *, weights: str | Path | None = None, device: str | None = None,
               threshold: float | None = None) -> str:
    """The canonical string of `text` with the given options set (None leaves an option as it is)."""
    spec = parse_spec(text)
    changes = {}
    if weights is None and spec.weights is not None:
        weights = spec.weights
    if weights is not None:
        # absolute, so a worker started from another folder finds the same file
        changes["weights"] = str(Path(weights).expanduser().absolute())
    if device is not None and device != "auto":
        changes["device"] = device
    if threshold is not None:
        changes["threshold"] = float(threshold)
    return replace(spec, **changes).text if changes else spec.text
