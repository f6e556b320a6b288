"""Product photos: the trained photo CNN (teacher) -> a student of about a quarter of its cost,
distilled once with the labels and once with the teacher's labels only; top-1 on myntra/images-test.

    python benchmarks/distill_photo.py [--teacher-dir DIR] [--epochs 12] [--patience 4] [--work DIR]

The teacher: benchmarks/train_photo_classifier.py (20 article types, 96x96 input); trained here
into WORK/teacher when --teacher-dir is not given. The student: the same ResNet with one residual
block per stage instead of two (--student-blocks) and stages of 16-48-112-224 channels
(--student-widths; 0.25x of the teacher's multiply-adds, widths in blocks of 16 as onnxruntime's
convolutions want them on AVX-512), random initialisation. Half the layers: at batch 1 each layer
costs a fixed overhead that narrower widths do not remove (docs/PERFORMANCE.md).
Both distillations run `edgeopt.distill.distill` (KL on soft targets at T=2, plus cross-entropy
with --alpha 0.5 when labelled; flip / crop / colour-jitter augmentation), with early stopping
on 10 % held out from the training images; images-test is only scored, never trained or selected on.
Quality only; latency: `benchmarks/prune_photo.py --reuse --rounds 15 --also-time student=WORK/student-labels`.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCH = f"{ROOT / 'benchmarks' / 'photo_cnn.py'}:photo_resnet"
STUDENT_WIDTHS = [16, 48, 112, 224]  # multiples of 16: 18-36-74-148 (2 blocks) ran 1.9x slower than 16-32-80-144
STUDENT_BLOCKS = [1, 1, 1, 1]
INPUT = "x:1x3x96x96:float32"


def macs(widths, classes=20, size=96, blocks=(2, 2, 2, 2)) -> int:
    """Multiply-adds of PhotoResNet at batch 1 (convolutions and the head)."""
    total, hw, cin = 0, size // 2, widths[0]
    total += 3 * widths[0] * 9 * hw * hw
    for i, (w, n) in enumerate(zip(widths, blocks)):
        stride = 1 if i == 0 else 2
        hw_out = hw // stride
        total += cin * w * 9 * hw_out * hw_out + w * w * 9 * hw_out * hw_out  # first block
        if stride != 1 or cin != w:
            total += cin * w * hw_out * hw_out
        total += (n - 1) * 2 * w * w * 9 * hw_out * hw_out  # the other blocks
        hw, cin = hw_out, w
    return total + cin * classes


def top1(model_dir_or_file, test_csv: Path, **load) -> float:
    from edgeopt.data import load_data
    from edgeopt.models import load_model

    model = load_model(model_dir_or_file, **load)
    ds = load_data(test_csv, io=model.io)
    correct = 0
    for feeds, labels in ds.batches(128):
        out = model.reference(feeds)[model.io.output_names[0]]
        correct += int((out.argmax(1) == labels).sum())
    return correct / len(ds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher-dir", type=Path, help="output of train_photo_classifier.py (else trained here)")
    ap.add_argument("--teacher-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--limit", type=int, help="at most this many training images (smoke runs)")
    ap.add_argument("--patience", type=int, default=4, help="early stopping: epochs without a better held-out score")
    ap.add_argument("--runs", default="labels,teacher_labels_only", help="which distillations to run")
    ap.add_argument("--student-widths", default=",".join(map(str, STUDENT_WIDTHS)),
                    help="the student's four stage widths (multiples of 16 run faster on AVX-512: docs/PRUNE.md)")
    ap.add_argument("--student-blocks", default=",".join(map(str, STUDENT_BLOCKS)),
                    help="residual blocks per stage (fewer layers: less per-layer overhead at batch 1)")
    ap.add_argument("--work", type=Path, default=Path("distill-photo-work"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from edgeopt.distill import distill
    from edgeopt.spec import parse_input

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from photo_cnn import photo_resnet

    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tdir = args.teacher_dir or work / "teacher"
    if not (tdir / "photo_cnn.pth").is_file():
        log(f"training the teacher into {tdir}")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_photo_classifier.py"), str(tdir),
                        "--epochs", str(args.teacher_epochs)], check=True)
    classes = json.loads((tdir / "classes.json").read_text())
    rows = list(csv.DictReader(open(tdir / "train.csv", newline="")))
    # the CSVs hold paths relative to the teacher folder: write ours beside them
    labelled, unlabelled = tdir / "distill_train.csv", tdir / "distill_train_unlabelled.csv"
    if args.limit:
        rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:args.limit]]
    with open(labelled, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows((r["path"], r["label"]) for r in rows)
    with open(unlabelled, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows((r["path"],) for r in rows)
    widths = [int(w) for w in args.student_widths.split(",")]
    depth = [int(n) for n in args.student_blocks.split(",")]
    torch.manual_seed(0)
    student_init = work / "student_init.pth"
    torch.save(photo_resnet(len(classes), widths, depth).state_dict(), student_init)
    common = dict(teacher=tdir / "photo_cnn.pth", teacher_arch=ARCH, teacher_arch_kwargs={"num_classes": len(classes)},
                  student=student_init, student_arch=ARCH,
                  student_arch_kwargs={"num_classes": len(classes), "widths": widths, "blocks": depth},
                  inputs=[parse_input(INPUT)], task="classify", epochs=args.epochs, patience=args.patience,
                  latency=False, log=log)
    test_csv = tdir / "test.csv"
    teacher_macs, student_macs = macs([32, 64, 128, 256]), macs(widths, blocks=depth)
    results = {"setup": {"train_images": len(rows), "test_images": sum(1 for _ in open(test_csv)) - 1,
                         "classes": len(classes), "epochs": args.epochs, "student_widths": widths,
                         "student_blocks": depth,
                         "cost_ratio_macs": student_macs / teacher_macs}}
    results["teacher_top1"] = top1(tdir / "photo_cnn.pth", test_csv, arch=ARCH,
                                   arch_kwargs={"num_classes": len(classes)}, inputs=[parse_input(INPUT)])
    log(f"teacher top-1 {results['teacher_top1']:.4f}")
    for name, data in (("labels", labelled), ("teacher_labels_only", unlabelled)):
        if name not in args.runs.split(","):
            continue
        out = work / f"student-{name}"
        t0 = time.perf_counter()
        r = distill(data=data, out=out, **common)
        results[name] = {"top1": top1(out, test_csv), "minutes": round((time.perf_counter() - t0) / 60, 1),
                         "epochs_run": r.report.training.epochs_run,
                         "best_epoch": r.report.training.best_epoch}
        log(f"student ({name}) top-1 {results[name]['top1']:.4f}")
    if "labels" in results:
        results["kept_with_labels"] = results["labels"]["top1"] / results["teacher_top1"]
    if "labels" in results and "teacher_labels_only" in results:
        results["teacher_only_vs_labelled"] = results["teacher_labels_only"]["top1"] / results["labels"]["top1"]
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
