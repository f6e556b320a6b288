"""Train the product-photo classifier on ../shared/data/myntra (articleType, 20 most common classes).

    python benchmarks/train_photo_classifier.py OUT_DIR [--epochs 5]

Writes OUT_DIR/photo_cnn.pth (state dict), classes.json, and train.csv / test.csv (path,label,
paths relative to OUT_DIR) for `edgeopt export --int8 --calib train.csv --eval test.csv`. The
test split (images-test/) is never used for training or calibration.
"""

import argparse
import collections
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from photo_cnn import photo_resnet  # noqa: E402

DATA = Path(os.environ.get("EDGEOPT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SIZE = 96  # input height/width; the benchmark exports with --input x:1x3x96x96:float32
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def labelled(split: str, classes=None):
    styles = {}
    with open(DATA / "myntra" / "styles.csv", newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if len(row) >= 5:
                styles[row[0]] = row[4]
    files = sorted((DATA / "myntra" / split).glob("*.jpg"))
    pairs = [(p, styles[p.stem]) for p in files if p.stem in styles]
    if classes is None:
        classes = [c for c, _ in collections.Counter(t for _, t in pairs).most_common(20)]
    return [(p, classes.index(t)) for p, t in pairs if t in classes], classes


def load(pairs):
    from PIL import Image

    x = np.empty((len(pairs), SIZE, SIZE, 3), np.uint8)
    for i, (p, _) in enumerate(pairs):
        with Image.open(p) as im:
            x[i] = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    return x, np.array([y for _, y in pairs])


def to_tensor(x):
    return torch.from_numpy(((x.astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    if not (DATA / "myntra" / "images").is_dir():
        sys.exit(f"shared data missing: {DATA / 'myntra'}")
    args.out.mkdir(parents=True, exist_ok=True)
    train, classes = labelled("images")
    test, _ = labelled("images-test", classes)
    for name, pairs in (("train.csv", train), ("test.csv", test)):
        with open(args.out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows((os.path.relpath(p, args.out), y) for p, y in pairs)
    (args.out / "classes.json").write_text(json.dumps(classes))
    xtr, ytr = load(train)
    xte, yte = load(test)
    torch.manual_seed(0)
    net = photo_resnet(len(classes))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = args.epochs * (len(xtr) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    rng = np.random.default_rng(0)
    for epoch in range(args.epochs):
        net.train()
        t0, order = time.time(), rng.permutation(len(xtr))
        for i in range(len(xtr) // 64):
            idx = order[i * 64:(i + 1) * 64]
            xb = xtr[idx]
            flip = rng.random(len(idx)) < 0.5
            xb[flip] = xb[flip, :, ::-1]
            loss = torch.nn.functional.cross_entropy(net(to_tensor(xb)), torch.from_numpy(ytr[idx]),
                                                     label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(to_tensor(xte[i:i + 256])).argmax(1) for i in range(0, len(xte), 256)]).numpy()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test top-1 {(pred == yte).mean():.4f}, "
              f"{time.time() - t0:.0f}s", flush=True)
    torch.save(net.state_dict(), args.out / "photo_cnn.pth")


if __name__ == "__main__":
    main()
