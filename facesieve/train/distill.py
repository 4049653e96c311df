"""Distil a quality signal into a fast regressor, the eDifFIQA way (Babnik et al., TBIOM 2024).

A teacher (any facesieve quality method, or a CSV of scores) labels every face; a student
(backbone + the 512->1024->1 GELU head of eDifFIQA) learns to predict the label from the aligned
crop alone, while a representation-consistency term keeps its feature close to the face
embedding. Label optimisation moves each label by where the student's feature sits relative to
its identity's high-quality centre:

    q  = min-max normalised teacher label, in [0, 1]
    c  = mean embedding of the identity's faces whose label is in the top 20% of all labels
         (identities with fewer than 10 such faces are left out of training, and reported)
    q* = clip(q - 0.5 (1 - cos(f(x), c)), 0, 1)        f(x): the student's current feature
    L  = 0.5 Lrc + 0.5 Lq,   Lrc = mean(1 - cos(f(x), e_x)),   Lq = L1(pred, q*)

The teacher embeddings e_x come from the run's embedder (SFace, dlib: 128-d), while the student's
feature is 512-d. Where the sizes differ, a bias-free linear projection P (512 -> d) is trained
with the head and f(x) above means P(feature); the centres live in the embedder's space. P is a
training device only: the exported model is backbone + head, as eDifFIQA(T). Where the sizes match
(an ArcFace-style 512-d embedder), no projection is used, exactly as in the paper.

Outputs in the model folder: checkpoint.pt (resume state), model.pth (best epoch, eDifFIQA key
layout), model.onnx (same input/output contract as eDifFIQA(T)), train.csv, steps.csv, loss.png,
split.csv, meta.json, and after `evaluate_holdout` edc.csv / edc.png.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.errors import FacesieveError, UsageError
from facesieve.figures import pyplot, save_figure
from facesieve.models.spec import DEVICES
from facesieve.train.data import TrainData

BACKBONES = ("mobilefacenet", "iresnet18", "iresnet50", "iresnet100")
FEATURE_DIM = 512
OFFICIAL_TRAIN_LAST = 100  # eDifFIQA's optimiser takes the backbone's last 100 parameter tensors
CHECKPOINT = "checkpoint.pt"
BEST = "model.pth"
ONNX = "model.onnx"

# Settings that change what is learnt: a resumed run must agree on all of them.
_RESUME_KEYS = ("backbone", "init", "train_last", "lr_head", "lr_backbone", "clip", "theta", "epsilon",
                "top_fraction", "min_top_faces", "val_split", "seed", "projection", "best_by")


@dataclass
class DistillConfig:
    """Training settings; None means "chosen for the machine" (batch size, workers, device)."""

    backbone: str = "mobilefacenet"
    init: str | None = None
    train_last: int | None = None  # None: every tensor from scratch, the last 100 with --init
    epochs: int = 10
    batch_size: int | None = None
    workers: int | None = None
    lr_head: float = 1e-3
    lr_backbone: float = 1e-4
    clip: float = 5.0
    theta: float = 0.5  # weight of Lrc; Lq gets 1 - theta
    epsilon: float = 0.5
    top_fraction: float = 0.2
    min_top_faces: int = 10
    val_split: float = 0.2
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch; None keeps torch's default
    amp: bool = True  # only on CUDA
    projection: str = "auto"  # auto | linear | none
    best_by: str = "spearman"  # spearman | loss: which held-out measure picks the kept epoch
    max_steps: int | None = None  # cap on optimiser steps per epoch (smoke tests)
    export: bool = True

    def check(self) -> None:
        if self.backbone not in BACKBONES:
            raise UsageError(f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        if self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if self.batch_size is not None and self.batch_size < 2:
            raise UsageError("the training batch size must be at least 2 (batch norm needs two faces)")
        if self.train_last is not None and self.train_last < 0:
            raise UsageError("--train-last must be >= 0")
        if not 0.0 <= self.val_split < 1.0:
            raise UsageError("--val-split must be in [0, 1)")
        if not 0.0 < self.top_fraction <= 1.0:
            raise UsageError("--top-fraction must be in (0, 1]")
        if self.min_top_faces < 1:
            raise UsageError("--min-top-faces must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.best_by not in ("spearman", "loss"):
            raise UsageError("--best-by must be spearman or loss")
        if self.projection not in ("auto", "linear", "none"):
            raise UsageError("--projection must be auto, linear or none")
        if not 0.0 <= self.theta <= 1.0:
            raise UsageError("theta must be in [0, 1]")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise UsageError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------ labels


def minmax(x: np.ndarray) -> np.ndarray:
    """Labels scaled to [0, 1] over all given faces (eDifFIQA normalises its prior scores so)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("labels must be a non-empty array of finite numbers")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        raise UsageError("every teacher label is the same: there is nothing to learn from this teacher")
    return (x - lo) / (hi - lo)


@dataclass
class Centres:
    """Per-identity high-quality centres. index[i] is face i's row in vectors, -1 if left out."""

    names: list[str]
    vectors: np.ndarray
    index: np.ndarray
    threshold: float
    top_counts: dict[str, int]  # identity -> faces at or above the threshold (all identities)
    left_out: list[str] = field(default_factory=list)


def identity_centres(labels: np.ndarray, embeddings: np.ndarray, identities: np.ndarray,
                     top_fraction: float = 0.2, min_faces: int = 10) -> Centres:
    """eDifFIQA's centres: the threshold is the label at rank int(top_fraction * N) of all labels
    sorted high to low; an identity's centre is the mean embedding of its faces at or above it;
    identities with fewer than `min_faces` such faces get none (their faces are left out)."""
    q = np.asarray(labels, dtype=np.float64)
    e = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(identities).astype(str)
    if not (len(q) == len(e) == len(ids)) or len(q) == 0:
        raise ValueError("labels, embeddings and identities must be non-empty and of equal length")
    desc = np.sort(q)[::-1]
    threshold = float(desc[min(int(top_fraction * len(q)), len(q) - 1)])
    top = q >= threshold
    names, codes = np.unique(ids, return_inverse=True)
    counts = np.bincount(codes[top], minlength=len(names))
    kept = np.flatnonzero(counts >= min_faces)
    row_of = np.full(len(names), -1, dtype=np.int64)
    row_of[kept] = np.arange(len(kept))
    vectors = np.zeros((len(kept), e.shape[1]), np.float64)
    chosen = top & (row_of[codes] >= 0)
    np.add.at(vectors, row_of[codes[chosen]], e[chosen])
    vectors /= np.maximum(counts[kept], 1)[:, None]
    return Centres(
        names=[str(n) for n in names[kept]],
        vectors=vectors.astype(np.float32),
        index=row_of[codes],
        threshold=threshold,
        top_counts={str(n): int(c) for n, c in zip(names, counts)},
        left_out=[str(n) for n in names[counts < min_faces]],
    )


def optimise_labels(q, feat, centres, epsilon: float = 0.5):
    """q* = clip(q - epsilon (1 - cos(feat, centre)), 0, 1), row by row (torch tensors)."""
    import torch
    import torch.nn.functional as F

    cos = F.cosine_similarity(feat.float(), centres.float(), dim=1)
    return torch.clamp(q.float() - epsilon * (1.0 - cos), 0.0, 1.0)


def split_identities(identities: np.ndarray, val_split: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of faces whose identity is held out for validation (a seeded share of identities)."""
    ids = np.asarray(identities).astype(str)
    names = np.unique(ids)
    if val_split <= 0:
        return np.zeros(len(ids), bool)
    if len(names) < 2:
        raise UsageError("a validation split needs at least two identities (use --val-split 0 to train on one)")
    n_val = min(max(1, round(val_split * len(names))), len(names) - 1)
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(names)[:n_val].tolist())
    return np.array([i in held for i in ids], dtype=bool)


# ----------------------------------------------------------------------------------------- student


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        raise FacesieveError("training needs PyTorch: pip install 'facesieve[torch]'") from None
    return torch


def make_student(backbone: str, teacher_dim: int, projection: str = "auto"):
    """The student network: eDifFIQA(backbone) returning (feature, score), plus the projection."""
    torch = _torch()
    from torch import nn

    from facesieve.models.archs import EDifFIQAModel, QualityMLP, build_backbone

    class Student(nn.Module):
        """`net` is the exported eDifFIQA model; `proj` maps its 512-d feature to the teacher's space."""

        def __init__(self) -> None:
            super().__init__()
            self.net = EDifFIQAModel(build_backbone(backbone), QualityMLP(FEATURE_DIM), return_feat=True)
            use = projection == "linear" or (projection == "auto" and teacher_dim != FEATURE_DIM)
            if projection == "none" and teacher_dim != FEATURE_DIM:
                raise UsageError(f"--projection none needs {FEATURE_DIM}-d teacher embeddings, "
                                 f"the embedder gives {teacher_dim}-d")
            self.proj = nn.Linear(FEATURE_DIM, teacher_dim, bias=False) if use else nn.Identity()

        def forward(self, x: torch.Tensor):
            feat, score = self.net(x)
            return self.proj(feat), score.reshape(-1)

    return Student()


def load_init(student, path: str | Path) -> str:
    """Initialise from a checkpoint: a whole eDifFIQA model (base_model.* + mlp.*) or a bare
    backbone (an insightface IResNet / MobileFaceNet state dict). Returns which it was."""
    torch = _torch()
    from facesieve.quality.ediffiqa import unwrap_state_dict

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--init checkpoint not found: {path}")
    try:
        sd = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except FacesieveError:
        raise
    except Exception as e:  # noqa: BLE001  (unpickling refused, truncated or foreign file: all one answer)
        raise FacesieveError(f"cannot read checkpoint {path}: {e}") from None
    if any(k.startswith("base_model.") for k in sd):
        target, kind = student.net, "ediffiqa"
    else:
        target, kind = student.net.base_model, "backbone"
    missing, unexpected = _key_diff(target.state_dict(), sd)
    if missing or unexpected:
        raise FacesieveError(f"{path.name} does not fit a {kind} of this backbone: {len(missing)} missing keys "
                             f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]} (wrong --backbone?)")
    try:
        target.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise FacesieveError(f"{path.name} does not fit {kind}: {str(e).splitlines()[0]}") from None
    return kind


def _key_diff(expected: dict, got: dict) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(got)), sorted(set(got) - set(expected))


def freeze_backbone(student, train_last: int | None) -> int:
    """Leave only the backbone's last `train_last` parameter tensors trainable (None: all).
    Tensors frozen by the architecture itself (IResNet's final BN scale) stay frozen."""
    params = list(student.net.base_model.parameters())
    n = len(params) if train_last is None else min(int(train_last), len(params))
    for i, p in enumerate(params):
        if i < len(params) - n:
            p.requires_grad_(False)
    return sum(1 for p in params if p.requires_grad)


def _frozen_bn_to_eval(student) -> None:
    """Batch norms whose parameters are all frozen keep their running statistics (eval mode)."""
    from torch import nn

    for m in student.net.base_model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            own = list(m.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                m.eval()


# ---------------------------------------------------------------------------------------- machine


def pick_device(device: str = "auto") -> str:
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but PyTorch sees no CUDA device")
    return device


def auto_batch_size(device: str, backbone: str) -> int:
    """128 on a GPU (eDifFIQA's setting), 64 for IResNet100; 32 on a CPU, where steps are slow."""
    if device.startswith("cuda"):
        return 64 if backbone == "iresnet100" else 128
    return 32


def auto_workers(device: str) -> int:
    """Crops are a memory map already decoded and aligned: on CPU the main process slices them
    faster than worker processes could ship them; on GPU a few workers keep the device fed."""
    if not device.startswith("cuda"):
        return 0
    return max(0, min(8, (os.cpu_count() or 2) // 2))


# ----------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int
    best_val_loss: float  # validation loss of the kept epoch
    epochs_done: int
    history: pd.DataFrame
    onnx: Path | None
    meta: dict


class _Rows:
    """torch Dataset over TrainData rows: (uint8 HWC crop, row number)."""

    def __init__(self, data: TrainData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        idx = int(self.data.crop_index[i])
        return np.array(self.data.crops[idx], dtype=np.uint8), i  # a copy, not a memmap view


def _to_input(batch_u8, device: str):
    """uint8 NHWC -> float32 NCHW, (x/255 - 0.5)/0.5 in float32 as quality/ediffiqa.preprocess."""
    x = batch_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    return ((x / 255.0) - 0.5) / 0.5


def _loader(data: TrainData, rows: np.ndarray, batch: int, workers: int, device: str, shuffle_seed: int | None):
    torch = _torch()

    order = np.asarray(rows, dtype=np.int64)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    if workers == 0:  # in-process: slice the memmap in sorted order per batch
        for s in range(0, len(order), batch):
            b = order[s:s + batch]
            yield torch.from_numpy(data.take_crops(b)), torch.from_numpy(b)
        return
    loader = torch.utils.data.DataLoader(_Rows(data), batch_size=batch, sampler=order.tolist(), num_workers=workers,
                                         pin_memory=device.startswith("cuda"), persistent_workers=False)
    for crops, idx in loader:
        yield crops, idx.long()


def _fingerprint(data: TrainData) -> str:
    h = hashlib.sha1()
    h.update("\n".join(data.paths.tolist()).encode())
    h.update(np.ascontiguousarray(data.labels, np.float64).tobytes())
    h.update(f"{data.teacher}|{data.embedder}|{np.shape(data.embeddings)}".encode())
    return h.hexdigest()[:16]


def _save_atomic(obj, path: Path) -> None:
    torch = _torch()
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False, disable=not enabled)


def train(data: TrainData, model_dir: Path | str, config: DistillConfig | None = None, *, restart: bool = False,
          progress: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume training) a student on `data` into `model_dir`; export the best epoch."""
    torch = _torch()
    config = config or DistillConfig()
    config.check()
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(data, Path(model_dir), config, restart, progress, log)
    finally:
        torch.set_num_threads(before)


def _train(data: TrainData, model_dir: Path, config: DistillConfig, restart: bool, progress: bool,
           log: Callable[[str], None] | None) -> TrainResult:
    torch = _torch()
    import torch.nn.functional as F

    log = log or (lambda msg: None)
    model_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    batch = config.batch_size or auto_batch_size(device, config.backbone)
    workers = auto_workers(device) if config.workers is None else int(config.workers)
    use_amp = bool(config.amp and device.startswith("cuda"))
    train_last = config.train_last
    if train_last is None and config.init:
        train_last = OFFICIAL_TRAIN_LAST
    settings = {k: getattr(config, k) for k in _RESUME_KEYS}
    settings["train_last"] = train_last

    # labels, split, centres ------------------------------------------------------------------
    if len(data) < 2:
        raise UsageError(f"only {len(data)} labelled face(s): nothing to train on")
    q = minmax(data.labels)
    emb = np.asarray(data.embeddings, dtype=np.float32)
    val_mask = split_identities(data.identities, config.val_split, config.seed)
    tr_rows = np.flatnonzero(~val_mask)
    centres = identity_centres(q[tr_rows], emb[tr_rows], data.identities[tr_rows], config.top_fraction,
                               config.min_top_faces)
    cidx = np.full(len(data), -1, np.int64)
    cidx[tr_rows] = centres.index
    train_rows = np.flatnonzero(cidx >= 0)
    val_rows = np.flatnonzero(val_mask)
    if len(train_rows) < 2:
        most = max(centres.top_counts.values()) if centres.top_counts else 0
        raise UsageError(
            f"no training identity has {config.min_top_faces} faces in the top {config.top_fraction:.0%} of labels "
            f"(the most any has is {most}); lower --min-top-faces or raise --top-fraction for a small dataset")
    batch = min(batch, len(train_rows))
    if centres.left_out:
        log(f"label optimisation: {len(centres.left_out)} training identities left out (fewer than "
            f"{config.min_top_faces} faces in the top {config.top_fraction:.0%}): "
            f"{', '.join(centres.left_out[:8])}{' ...' if len(centres.left_out) > 8 else ''}")
    _write_split(model_dir / "split.csv", data, val_mask, cidx, centres)

    # model, optimiser, resume ----------------------------------------------------------------
    torch.manual_seed(config.seed)
    student = make_student(config.backbone, emb.shape[1], config.projection)
    init_kind = load_init(student, config.init) if config.init else None
    n_trainable = freeze_backbone(student, train_last)
    student.to(device)
    head_params = list(student.net.mlp.parameters()) + list(student.proj.parameters())
    groups = [{"params": head_params, "lr": config.lr_head}]
    bb = [p for p in student.net.base_model.parameters() if p.requires_grad]
    if bb:
        groups.append({"params": bb, "lr": config.lr_backbone})
    opt = torch.optim.Adam(groups)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    fingerprint = _fingerprint(data)
    ckpt_path = model_dir / CHECKPOINT
    start_epoch, best_crit, best_epoch, history, steps = 0, math.inf, -1, [], []
    if ckpt_path.exists() and not restart:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint or state.get("settings") != settings:
            raise UsageError(f"{model_dir} holds a training run on other data or settings; use --restart to "
                             f"discard it, or another --out")
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, best_crit, best_epoch = int(state["epoch"]) + 1, float(state["best_crit"]), int(state["best_epoch"])
        history, steps = list(state["history"]), list(state["steps"])
        log(f"resuming after epoch {start_epoch} of {config.epochs} (best so far: epoch {best_epoch + 1})")
    elif restart:
        for name in (CHECKPOINT, BEST, ONNX):
            (model_dir / name).unlink(missing_ok=True)

    qt = torch.from_numpy(q.astype(np.float32)).to(device)
    et = torch.from_numpy(emb).to(device)
    ct = torch.from_numpy(centres.vectors).to(device)
    cit = torch.from_numpy(cidx).to(device)
    trainable = [p for p in student.parameters() if p.requires_grad]
    n_steps = len(train_rows) // batch + (len(train_rows) % batch >= max(2, batch // 2))
    if config.max_steps:
        n_steps = min(n_steps, config.max_steps)
    log(f"training {config.backbone} on {len(train_rows)} faces ({len(centres.names)} identities), validating on "
        f"{len(val_rows)} faces ({len(np.unique(data.identities[val_rows]))} identities); device {device}, batch "
        f"{batch}, {n_trainable} backbone tensors trainable")

    with _progress(progress) as bar:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            student.train()
            _frozen_bn_to_eval(student)
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=n_steps, loss="-")
            sums = np.zeros(3)
            seen = 0
            for step, (crops, rows) in enumerate(_loader(data, train_rows, batch, workers, device,
                                                         shuffle_seed=config.seed * 100_003 + epoch)):
                if step >= n_steps:
                    break
                if len(rows) < max(2, batch // 2):
                    # a small last batch gives batch norm noisy statistics (one face breaks it); its
                    # faces are shuffled into full batches in the other epochs
                    continue
                rows = rows.to(device)
                x = _to_input(crops, device)
                with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                    feat, pred = student(x)
                feat, pred = feat.float(), pred.float()
                with torch.no_grad():
                    target = optimise_labels(qt[rows], feat, ct[cit[rows]], config.epsilon)
                lq = F.l1_loss(pred, target)
                lrc = (1.0 - F.cosine_similarity(feat, et[rows], dim=1)).mean()
                loss = config.theta * lrc + (1.0 - config.theta) * lq
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(trainable, config.clip)
                scaler.step(opt)
                scaler.update()
                vals = (float(loss.detach()), float(lq.detach()), float(lrc.detach()))
                if not math.isfinite(vals[0]):
                    raise FacesieveError(f"training diverged at epoch {epoch + 1} step {step + 1} (loss {vals[0]})")
                sums += np.array(vals) * len(rows)
                seen += len(rows)
                steps.append({"epoch": epoch + 1, "step": step + 1, "loss": vals[0], "lq": vals[1], "lrc": vals[2]})
                bar.update(task, advance=1, loss=f"{vals[0]:.4f}")
            tr = sums / max(seen, 1)
            val = evaluate_loss(student, data, val_rows, q, emb, batch, device, config.theta, use_amp) if len(val_rows) \
                else {"loss": float(tr[0]), "lq": float(tr[1]), "lrc": float(tr[2]), "spearman": float("nan")}
            crit = _criterion(val, config.best_by if len(val_rows) else "loss")
            improved = best_epoch < 0 or crit < best_crit
            if improved:
                best_crit, best_epoch = crit, epoch
                _save_atomic(_cpu_state(student.net), model_dir / BEST)
            history.append({"epoch": epoch + 1, "train_loss": float(tr[0]), "train_lq": float(tr[1]),
                            "train_lrc": float(tr[2]), "val_loss": val["loss"], "val_lq": val["lq"],
                            "val_lrc": val["lrc"], "val_spearman": val["spearman"], "best": bool(improved),
                            "seconds": round(time.perf_counter() - t0, 3)})
            _save_atomic({"epoch": epoch, "student": _cpu_state(student), "optimizer": opt.state_dict(),
                          "scaler": scaler.state_dict() if use_amp else {}, "best_crit": best_crit,
                          "best_epoch": best_epoch, "history": history, "steps": steps,
                          "fingerprint": fingerprint, "settings": settings}, ckpt_path)
            write_curves(model_dir, history, steps)
            log(f"epoch {epoch + 1}/{config.epochs}: train {tr[0]:.4f} (Lq {tr[1]:.4f}, Lrc {tr[2]:.4f}), "
                f"val {val['loss']:.4f} (Lq {val['lq']:.4f}, Lrc {val['lrc']:.4f}, Spearman {val['spearman']:.3f})"
                f"{'  *best' if improved else ''}  {history[-1]['seconds']:.0f}s")

    write_curves(model_dir, history, steps)
    best_val = float(history[best_epoch]["val_loss"]) if 0 <= best_epoch < len(history) else math.nan
    onnx_path, onnx_diff = None, None
    if config.export and (model_dir / BEST).exists():
        onnx_path, onnx_diff = export_best(model_dir, config.backbone, data, val_rows if len(val_rows) else train_rows)
    meta = {
        "teacher": data.teacher, "embedder": data.embedder, "backbone": config.backbone,
        "variant_layout": _variant_of(config.backbone), "init": config.init, "init_kind": init_kind,
        "train_last": train_last, "trainable_backbone_tensors": n_trainable,
        "projection": "linear" if not isinstance(student.proj, torch.nn.Identity) else "none",
        "teacher_dim": int(emb.shape[1]), "device": device, "amp": use_amp, "batch_size": batch, "workers": workers,
        "faces": len(data), "train_faces": len(train_rows), "val_faces": len(val_rows),
        "train_identities": len(centres.names), "val_identities": len(np.unique(data.identities[val_rows])),
        "left_out_identities": centres.left_out, "top_threshold": centres.threshold,
        "label_min": float(np.min(data.labels)), "label_max": float(np.max(data.labels)),
        "best_epoch": best_epoch + 1, "best_by": config.best_by, "best_val_loss": best_val,
        "epochs_done": len(history),
        "onnx_max_abs_diff": onnx_diff, "config": asdict(config), "data_info": data.info,
    }
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, default=_plain))
    return TrainResult(model_dir, best_epoch + 1, best_val, len(history), pd.DataFrame(history), onnx_path, meta)


def _criterion(val: dict, best_by: str) -> float:
    """Lower is better. spearman: rank agreement with the teacher on held-out identities (what a
    quality score is used for: ordering faces); NaN (constant predictions) never wins."""
    if best_by == "loss":
        return float(val["loss"])
    rho = float(val["spearman"])
    return -rho if math.isfinite(rho) else math.inf


def _plain(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


def _cpu_state(module) -> dict:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def _variant_of(backbone: str) -> str | None:
    from facesieve.models.archs import EDIFFIQA_BACKBONES

    return next((v for v, b in EDIFFIQA_BACKBONES.items() if b == backbone), None)


def evaluate_loss(student, data: TrainData, rows: np.ndarray, q: np.ndarray, emb: np.ndarray, batch: int,
                  device: str, theta: float = 0.5, amp: bool = False) -> dict:
    """Validation loss as eDifFIQA computes it: theta Lrc + (1 - theta) L1(pred, q) with the plain
    normalised labels (no centre needed, so any identity can be held out), plus Spearman(pred, q)."""
    torch = _torch()
    import torch.nn.functional as F
    from scipy.stats import spearmanr

    student.eval()
    preds, lq_sum, lrc_sum = [], 0.0, 0.0
    with torch.no_grad():
        for crops, r in _loader(data, rows, batch, 0, device, None):
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                feat, pred = student(_to_input(crops, device))
            feat, pred = feat.float(), pred.float()
            qt = torch.from_numpy(q[r.numpy()].astype(np.float32)).to(device)
            et = torch.from_numpy(emb[r.numpy()]).to(device)
            lq_sum += float(F.l1_loss(pred, qt, reduction="sum"))
            lrc_sum += float((1.0 - F.cosine_similarity(feat, et, dim=1)).sum())
            preds.append(pred.cpu().numpy())
    n = max(len(rows), 1)
    lq, lrc = lq_sum / n, lrc_sum / n
    p = np.concatenate(preds) if preds else np.zeros(0)
    rho = float(spearmanr(p, q[rows]).statistic) if len(rows) > 2 and np.ptp(p) > 0 else float("nan")
    return {"loss": theta * lrc + (1 - theta) * lq, "lq": lq, "lrc": lrc, "spearman": rho}


def _write_split(path: Path, data: TrainData, val_mask: np.ndarray, cidx: np.ndarray, centres: Centres) -> None:
    """One row per identity: train / val / left_out, its faces and its faces in the top share."""
    from facesieve.workspace import atomic_write_csv

    df = pd.DataFrame({"identity": data.identities, "val": val_mask, "centre": cidx >= 0})
    g = df.groupby("identity").agg(faces=("val", "size"), val=("val", "any"), centre=("centre", "any")).reset_index()
    g["split"] = np.where(g["val"], "val", np.where(g["centre"], "train", "left_out"))
    g["top_faces"] = g["identity"].map(centres.top_counts).fillna(-1).astype(int)
    atomic_write_csv(path, g[["identity", "split", "faces", "top_faces"]])


def write_curves(model_dir: Path, history: list[dict], steps: list[dict]) -> None:
    """train.csv (one row per epoch), steps.csv (one per step) and loss.png."""
    from facesieve.workspace import atomic_write_csv

    model_dir = Path(model_dir)
    if history:
        atomic_write_csv(model_dir / "train.csv", pd.DataFrame(history))
    if steps:
        atomic_write_csv(model_dir / "steps.csv", pd.DataFrame(steps))
    if not steps:
        return
    plt = pyplot()

    s = pd.DataFrame(steps)
    per_epoch = s.groupby("epoch")["step"].transform("max")
    x = (s["epoch"] - 1) + s["step"] / per_epoch
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    ax.plot(x, s["loss"], lw=0.6, alpha=0.45, color="C0", label="train loss (step)")
    if history:
        h = pd.DataFrame(history)
        ax.plot(h["epoch"], h["train_loss"], "o-", color="C0", label="train loss (epoch mean)")
        ax.plot(h["epoch"], h["val_loss"], "s-", color="C1", label="validation loss")
        ax.plot(h["epoch"], h["val_lq"], ":", color="C2", label="validation Lq")
        ax.plot(h["epoch"], h["val_lrc"], ":", color="C3", label="validation Lrc")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_ylim(0, None)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, model_dir / "loss.png")


# ------------------------------------------------------------------------------------- load, export


def load_student(path: Path | str, backbone: str = "mobilefacenet"):
    """The eDifFIQA model (backbone + head, eval mode, CPU) saved in model.pth or checkpoint.pt."""
    torch = _torch()
    from facesieve.models.archs import EDifFIQAModel, QualityMLP, build_backbone
    from facesieve.quality.ediffiqa import unwrap_state_dict

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "student" in state:  # resume checkpoint
        state = {k[len("net."):]: v for k, v in state["student"].items() if k.startswith("net.")}
    sd = unwrap_state_dict(state)
    net = EDifFIQAModel(build_backbone(backbone), QualityMLP(FEATURE_DIM))
    missing, unexpected = _key_diff(net.state_dict(), sd)
    if missing or unexpected:
        raise FacesieveError(f"{Path(path).name} is not an eDifFIQA({backbone}) model: {len(missing)} missing, "
                             f"{len(unexpected)} unexpected keys (wrong --backbone?)")
    net.load_state_dict(sd, strict=True)
    return net.eval()


def export_best(model_dir: Path | str, backbone: str, data: TrainData | None = None,
                rows: np.ndarray | None = None) -> tuple[Path, float | None]:
    """model.pth -> model.onnx (input [N,3,112,112] float32, output [N,1]); returns the largest
    |onnx - torch| difference on up to 16 of the faces (None without data)."""
    torch = _torch()
    from facesieve.models.onnx import OnnxModel
    from facesieve.quality.ediffiqa import export_onnx, preprocess

    model_dir = Path(model_dir)
    net = load_student(model_dir / BEST, backbone)
    path = export_onnx(net, model_dir / ONNX)
    if data is None or not len(data):
        return path, None
    pick = np.asarray(rows if rows is not None else np.arange(len(data)))[:16]
    x = preprocess(data.take_crops(pick))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy().reshape(-1)
    got = OnnxModel.load(path, device="cpu").run(x).reshape(-1)
    return path, float(np.max(np.abs(ref - got)))


# -------------------------------------------------------------------------------------- evaluation


def evaluate_holdout(embeddings: np.ndarray, identities: np.ndarray, scores: dict[str, np.ndarray], *,
                     fmr: float = 1e-3, upper: float = 0.3, seed: int = 0, max_pairs: int = 500_000,
                     plot: Path | str | None = None) -> pd.DataFrame:
    """EDC pAUC (discard 0..upper) of each quality in `scores`, plus random discard, on these faces.

    Comparisons: every same-identity and different-identity pair (sampled beyond `max_pairs` per
    side), cosine similarity of the embeddings, threshold at `fmr` from the impostors; pair
    quality = min of the two faces' scores. pauc is the raw area (lower is better), pauc_norm is
    relative to keeping everything (random discard is about 1).
    """
    from facesieve.evaluate.edc import (
        edc_curve,
        pair_quality,
        pauc,
        plot_edc,
        random_edc,
    )
    from facesieve.evaluate.verification import make_pairs, pair_distances

    ids = np.asarray(identities).astype(str)
    n = len(ids)
    all_pairs = n * (n - 1) // 2
    pairs, genuine = make_pairs(ids, n_pairs=None if all_pairs <= 2 * max_pairs else max_pairs, seed=seed)
    sim = 1.0 - pair_distances(np.asarray(embeddings), pairs, "cosine")
    gen, imp = sim[genuine], sim[~genuine]
    if len(gen) == 0 or len(imp) == 0:
        raise UsageError("the held-out faces need both same-identity and different-identity pairs for an EDC")
    rows, curves = [], {}
    for name, s in scores.items():
        f, e = edc_curve(gen, imp, pair_quality(s, pairs[genuine]), fmr)
        curves[name] = (f, e)
        rows.append({"quality": name, "pauc": pauc(f, e, upper), "pauc_norm": pauc(f, e, upper, normalize=True),
                     "fnmr_at_0": float(e[0])})
    f, e = random_edc(gen, imp, fmr=fmr, seed=seed)
    curves["random"] = (f, e)
    rows.append({"quality": "random", "pauc": pauc(f, e, upper), "pauc_norm": pauc(f, e, upper, normalize=True),
                 "fnmr_at_0": float(e[0])})
    if plot is not None:
        plot_edc(plot, curves, upper=upper, title=f"EDC on held-out identities (FMR {fmr:g})")
    out = pd.DataFrame(rows)
    out.attrs.update(genuine=len(gen), impostor=len(imp), fmr=fmr, upper=upper)
    return out


def time_per_face(fn: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, repeats: int = 3) -> float:
    """Best-of-`repeats` seconds per face of fn(crops) (after one warm-up call)."""
    fn(crops[: min(len(crops), 8)])
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(crops)
        best = min(best, time.perf_counter() - t0)
    return best / max(len(crops), 1)


def holdout_report(data: TrainData, model_dir: Path | str, config: DistillConfig | None = None, *,
                   fmr: float = 1e-3, upper: float = 0.3, timing_faces: int = 256) -> dict:
    """Score the held-out identities with the exported student (ONNX, CPU) and with the teacher's
    labels; EDC pAUC of both and of random discard (edc.csv, edc.png), and the student's speed."""
    from facesieve.quality.ediffiqa import EDifFIQA
    from facesieve.workspace import atomic_write_csv

    config = config or DistillConfig()
    model_dir = Path(model_dir)
    onnx = model_dir / ONNX
    if not onnx.exists():
        raise FacesieveError(f"{onnx} not found: train (with export) first")
    val = np.flatnonzero(split_identities(data.identities, config.val_split, config.seed))
    if len(val) == 0:
        raise UsageError("no held-out identities (--val-split 0): nothing to evaluate on")
    scorer = EDifFIQA("T", weights=onnx, device="cpu", threads=config.threads)
    crops = data.take_crops(val)
    student = scorer.score_batch(crops)
    table = evaluate_holdout(np.asarray(data.embeddings)[val], data.identities[val],
                             {"student": student, "teacher": data.labels[val]}, fmr=fmr, upper=upper,
                             seed=config.seed, plot=model_dir / "edc.png")
    atomic_write_csv(model_dir / "edc.csv", table)
    sec = time_per_face(scorer.score_batch, crops[:timing_faces])
    out = {
        "holdout_faces": len(val), "holdout_identities": len(np.unique(data.identities[val])),
        "genuine_pairs": table.attrs["genuine"], "impostor_pairs": table.attrs["impostor"], "fmr": fmr,
        "upper": upper, "pauc": dict(zip(table["quality"], table["pauc"].round(6))),
        "pauc_norm": dict(zip(table["quality"], table["pauc_norm"].round(4))),
        "fnmr_at_0": float(table["fnmr_at_0"].iloc[0]),
        "student_ms_per_face": round(sec * 1e3, 3),
        "teacher_ms_per_face": round(data.info["teacher_seconds_per_face"] * 1e3, 3)
        if data.info.get("teacher_seconds_per_face") else None,
    }
    from scipy.stats import spearmanr

    out["spearman_student_teacher"] = round(float(spearmanr(student, data.labels[val]).statistic), 4)
    meta_path = model_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta["holdout"] = out
    meta_path.write_text(json.dumps(meta, indent=2, default=_plain))
    return out
