"""`facesieve train-quality`: distil a quality method into a fast student model (eDifFIQA-style)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facesieve.cli.options import add_option, common_flags, model_flags

EPILOG = """\
examples:
  facesieve train-quality photos/ --out qmodel
  facesieve train-quality photos/ --out qmodel --teacher sdd-fiqa --epochs 20
  facesieve train-quality photos/ --out qmodel --teacher scores.csv        (CSV rows: path,score)
  facesieve train-quality photos/ --out qmodel --backbone iresnet50 --init arcface_r50.pth --train-last 100
  facesieve train-quality photos/ --out qmodel --workspace cleaned/.facesieve   (reuse a run's crops)
  facesieve run photos/ --out cleaned --quality onnx:qmodel/model.onnx         (use the trained model)

Re-running the same command resumes after the last finished epoch (--restart starts over);
raising --epochs continues a finished run.

output:
  qmodel/model.onnx     the student: input [N,3,112,112] RGB (x/255-0.5)/0.5, output [N,1], higher is better
  qmodel/model.pth      the same model as a PyTorch state dict (eDifFIQA key layout)
  qmodel/train.csv      per-epoch losses (train, validation); steps.csv per step; loss.png
  qmodel/split.csv      identities used for training, held out, or left out by label optimisation
  qmodel/edc.csv        EDC pAUC of student, teacher and random discard on the held-out identities
  qmodel/meta.json      settings and measurements
"""


def register(sub) -> None:
    from facesieve.train.distill import BACKBONES

    sp = sub.add_parser(
        "train-quality",
        help="train a fast quality model from a slower one (eDifFIQA-style distillation)",
        description="Label every face of DATASET with a teacher quality method, then train a student "
        "(backbone + MLP head) to predict the label from the aligned crop, with eDifFIQA's label "
        "optimisation and representation-consistency loss. Needs PyTorch (pip install 'facesieve[torch]').",
        epilog=EPILOG,
    )
    add_option(sp, "dataset")
    sp.add_argument("--out", "-o", type=Path, required=True, metavar="MODEL_DIR", help="folder for the model and its logs")
    sp.add_argument("--teacher", default="offline", metavar="METHOD|CSV",
                    help="quality method whose scores are learnt (any name `run --quality` takes: offline, "
                         "robustness, sdd-fiqa, ediffiqa, ...), or a CSV file of path,score rows")
    model_flags(sp)
    g = sp.add_argument_group("student and training")
    g.add_argument("--backbone", default="mobilefacenet", choices=BACKBONES, help="student backbone")
    g.add_argument("--init", default=None, metavar="PATH",
                   help="start from this checkpoint: a backbone (insightface IResNet / MobileFaceNet) or a whole "
                        "eDifFIQA model (default: random weights)")
    g.add_argument("--train-last", type=int, default=None, metavar="N",
                   help="train only the backbone's last N parameter tensors (default: all from scratch, 100 with --init)")
    g.add_argument("--epochs", type=int, default=10, help="training epochs")
    g.add_argument("--train-batch", type=int, default=None, metavar="N",
                   help="faces per training step (default: 128 on a GPU, 32 on a CPU)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="data-loading processes (default: 0 on a CPU, up to 8 on a GPU)")
    g.add_argument("--lr-head", type=float, default=1e-3, help="Adam learning rate of the MLP head (and projection)")
    g.add_argument("--lr-backbone", type=float, default=1e-4, help="Adam learning rate of the backbone")
    g.add_argument("--val-split", type=float, default=0.2, help="share of identities held out for validation")
    g.add_argument("--seed", type=int, default=0, help="seed of the split, the shuffling and the initial weights (default: 0)")
    g.add_argument("--top-fraction", type=float, default=0.2,
                   help="label optimisation: share of all labels that counts as high quality for the centres")
    g.add_argument("--min-top-faces", type=int, default=10,
                   help="label optimisation: identities with fewer high-quality faces are left out")
    g.add_argument("--projection", default="auto", choices=("auto", "linear", "none"),
                   help="linear map from the 512-d student feature to the embedder's space for the consistency "
                        "loss (auto: only when the sizes differ)")
    g.add_argument("--best-by", default="spearman", choices=("spearman", "loss"),
                   help="which epoch is kept: highest Spearman(prediction, teacher) on the held-out identities, "
                        "or lowest validation loss (eDifFIQA's choice)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    g.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    g.add_argument("--restart", action="store_true", help="discard an earlier training run in MODEL_DIR")
    g.add_argument("--no-eval", action="store_true", help="skip the EDC evaluation on the held-out identities")
    common_flags(sp)
    sp.set_defaults(func=cmd_train_quality)


def cmd_train_quality(args: argparse.Namespace) -> int:
    from facesieve.errors import UsageError
    from facesieve.progress import Reporter, _force
    from facesieve.train.data import prepare
    from facesieve.train.distill import DistillConfig, holdout_report, train

    config = DistillConfig(
        backbone=args.backbone, init=str(args.init) if args.init else None, train_last=args.train_last,
        epochs=args.epochs, batch_size=args.train_batch, workers=args.workers, lr_head=args.lr_head,
        lr_backbone=args.lr_backbone, val_split=args.val_split, seed=args.seed, top_fraction=args.top_fraction,
        min_top_faces=args.min_top_faces, projection=args.projection, device=args.device, threads=args.threads,
        amp=not args.no_amp, best_by=args.best_by,
    )
    config.check()
    out = Path(args.out)
    if out.resolve() == Path(args.dataset).resolve() or Path(args.dataset).resolve() in out.resolve().parents:
        raise UsageError("--out must not be inside DATASET (it would be scanned as images)")
    rep = Reporter(quiet=args.quiet or args.json)
    data = prepare(args.dataset, args.workspace or out / ".facesieve", teacher=args.teacher, embedder=args.embedder,
                   detector=args.detector, face_policy=args.face_policy, aligned=args.aligned, jobs=args.jobs,
                   batch_size=args.batch_size, reporter=rep)
    if data.info.get("no_label"):
        rep.warn(f"{data.info['no_label']} faces have no teacher score and are not used")
    from rich.markup import escape

    result = train(data, out, config, restart=args.restart, progress=not (args.quiet or args.json) and _force(),
                   log=lambda msg: rep.info(escape(msg)))
    summary = {"model_dir": str(out), "onnx": str(result.onnx) if result.onnx else None,
               "best_epoch": result.best_epoch, "best_val_loss": round(result.best_val_loss, 6),
               "epochs_done": result.epochs_done, "train_faces": result.meta["train_faces"],
               "val_faces": result.meta["val_faces"], "left_out_identities": len(result.meta["left_out_identities"])}
    if not args.no_eval and config.val_split > 0 and result.onnx:
        try:
            summary["holdout"] = holdout_report(data, out, config)
        except UsageError as e:  # the model is trained and saved; only the evaluation is not possible
            rep.warn(f"no held-out evaluation: {e}")
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    lines = [(f"facesieve: trained {config.backbone} on {summary['train_faces']} faces; kept epoch "
              f"{summary['best_epoch']} of {summary['epochs_done']} (best {config.best_by}; validation loss "
              f"{summary['best_val_loss']:.4f})"),
             f"  model: {summary['onnx']}  (use: --quality onnx:{summary['onnx']})"]
    h = summary.get("holdout")
    if h:
        p = h["pauc"]
        lines.append(f"  held-out EDC pAUC@{h['upper']} (FMR {h['fmr']:g}, {h['holdout_identities']} identities, lower is "
                     f"better): student {p['student']:.4f}, teacher {p['teacher']:.4f}, random {p['random']:.4f}")
        speed = f"  student {h['student_ms_per_face']:.2f} ms/face on CPU"
        if h.get("teacher_ms_per_face"):
            speed += f", teacher {h['teacher_ms_per_face']:.2f} ms/face"
        lines.append(speed + f"; Spearman(student, teacher) {h['spearman_student_teacher']:.3f}")
    print("\n".join(lines))
    return 0
