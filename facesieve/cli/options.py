"""Option blocks shared by the sub-commands, built from RunConfig's field metadata (facesieve/config.py):
a flag, its help and its default are written once, and every command that takes it shows the same."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path

from facesieve.config import RunConfig
from facesieve.models.spec import DEVICES, merge_spec

_FIELDS = {f.name: f for f in fields(RunConfig)}

GROUPS = {"duplicates": "duplicates and outliers", "engine": "engine (docs/scale.md)"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has a meaningful one) and keeps the examples' line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.nargs == 0 or action.default in (None, False, argparse.SUPPRESS)
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every facesieve command's parser: HelpFormatter by default, and its sub-command parsers are Parsers."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def add_option(parser, name: str, **overrides) -> argparse.Action:
    """The option of RunConfig field `name` (dest = the field's name); `overrides` replace argparse
    settings where a command means something narrower (another help, required or not)."""
    f = _FIELDS[name]
    kw = dict(f.metadata["cli"])
    flags = kw.pop("flags")
    kw.pop("group", None)
    if f.default is not MISSING:
        kw["default"] = f.default
    elif flags:
        kw["required"] = True
    kw.update(overrides)
    if callable(kw.get("help")):
        kw["help"] = kw["help"]()
    if not flags:
        return parser.add_argument(name, **kw)
    return parser.add_argument(*flags, dest=name, **kw)


def add_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """Several fields' options in the order given (none given: every option field the parser lacks yet,
    in RunConfig's order, grouped ones after the others); a field with a `group` goes into that group."""
    if not names:
        present = {a.dest for a in parser._actions}
        names = tuple(n for n, f in _FIELDS.items() if "cli" in f.metadata and n not in present)
        rank = {g: i + 1 for i, g in enumerate(GROUPS)}
        names = sorted(names, key=lambda n: rank.get(_group_of(n), 0))
    for name in names:
        group = _group_of(name)
        add_option(_group(parser, GROUPS[group]) if group else parser, name)


def _group_of(name: str) -> str | None:
    return _FIELDS[name].metadata["cli"].get("group")


def _group(parser: argparse.ArgumentParser, title: str):
    return next((g for g in parser._action_groups if g.title == title), None) or parser.add_argument_group(title)


def common_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    sp.add_argument("--debug", action="store_true", help="show tracebacks")


def model_flags(sp: argparse.ArgumentParser, *, models: bool = True, workspace_help: str | None = None) -> None:
    """How faces are found and embedded: --detector/--embedder (without them with models=False, for a
    command that takes lists of models) and their weights, then the options of the workers."""
    if models:
        add_options(sp, "detector", "embedder")
        add_model_options(sp)
    add_options(sp, "face_policy", "aligned", "jobs", "batch_size")
    add_option(sp, "workspace", **({"help": workspace_help} if workspace_help else {}))


def add_model_options(sp: argparse.ArgumentParser, device: bool = False) -> None:
    """--detector-weights, --embedder-weights, --det-threshold and (with `device`) --device, folded
    into the model strings by `fold_model_args`. --device is optional because some commands (train)
    have a --device of their own for something else."""
    sp.add_argument("--detector-weights", type=Path, default=None, metavar="PATH",
                    help="local weights file for the detector (used as given, never downloaded)")
    sp.add_argument("--embedder-weights", type=Path, default=None, metavar="PATH",
                    help="local weights file for the embedder (.onnx; .pth for IResNets with torch installed)")
    sp.add_argument("--det-threshold", type=float, default=None, metavar="T",
                    help="detection score threshold, 0..1 (default: the detector's own, 0.6 for YuNet and RetinaFace)")
    if device:
        add_device_option(sp)


def add_device_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--device", dest="model_device", default="auto", choices=DEVICES,
                    help="where ONNX Runtime / PyTorch models run: auto = CUDA when available, else CPU "
                    "(OpenCV-DNN and dlib models always run on the CPU)")


def fold_model_args(args: argparse.Namespace) -> None:
    """Put the weights/device/threshold options into args.detector / args.embedder, so every
    command that passes those strings on (run, evaluate, train, ...) gets them."""
    if not any(hasattr(args, a) for a in ("detector_weights", "embedder_weights", "det_threshold", "model_device")):
        return
    device = getattr(args, "model_device", None)
    if getattr(args, "detector", None):
        args.detector = merge_spec(args.detector, weights=getattr(args, "detector_weights", None), device=device,
                                   threshold=getattr(args, "det_threshold", None))
    if getattr(args, "embedder", None):
        args.embedder = merge_spec(args.embedder, weights=getattr(args, "embedder_weights", None), device=device)


def usage(parser: argparse.ArgumentParser, file=None) -> int:
    """A command given without its sub-command: its help, and the exit code of bad usage."""
    parser.print_help(file)
    return 2
