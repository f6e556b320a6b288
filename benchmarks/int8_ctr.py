"""INT8 of an embedding-heavy CTR ranker: bytes against FP32 and the AUC drop on held-out rows.

    python benchmarks/int8_ctr.py [--vocab 5000] [--rows 60000] [--json FILE]

Model: the DeepFM-style ranker of tests/ctr_models.py (8 categorical fields in one shared table of
``--vocab`` rows x 16, a 1-wide linear table, an MLP over the flattened fields and 6 dense floats),
trained 6 epochs (batches of 256) on synthetic click rows (tests/ctr_models.click_rows: a hidden weight per id plus
one dense feature decide the click). Synthetic because the shared Criteo / Ali-CCP samples hold
200 rows at most (SOURCES.md: smoke tests only). Calibration: 512 training rows; the gate and the
numbers: ``--held`` rows never trained or calibrated on. Export:
``edgeopt export ranker.pt --arch tests/ctr_models.py:deepfm --input cats:1x8:int64 --input
dense:1x6:float32 --int8 --calib train.npz --eval held.npz --metric auc --max-drop 0.003
--no-speed-check`` (the speed check is left out: at this size the verdict is about bytes).
Prints each INT8 file's bytes vs its FP32 file, its AUC drop, and each candidate tried.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--held", type=int, default=5000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    import ctr_models
    from edgeopt.export import export

    work = Path(tempfile.mkdtemp(prefix="int8-ctr-"))
    train = ctr_models.click_rows(args.rows, seed=1, vocab=args.vocab)
    held = ctr_models.click_rows(args.held, seed=11, vocab=args.vocab)
    np.savez(work / "train.npz", **train)
    np.savez(work / "held.npz", **held)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = ctr_models.train(ctr_models.deepfm(vocab=args.vocab), train, batch=256)
    print(f"trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    torch.save(model.state_dict(), work / "ranker.pt")
    result = export(model=work / "ranker.pt", out=work / "out", arch=f"{ROOT / 'tests' / 'ctr_models.py'}:deepfm",
                    arch_kwargs={"vocab": args.vocab}, inputs=ctr_models.DEEPFM_INPUTS, int8=True,
                    calib=str(work / "train.npz"), eval_data=str(work / "held.npz"), metric="auc", max_drop=0.003,
                    speed_check=False, calib_size=512, eval_size=args.held)
    m = result.manifest.to_json()
    arts = {a["path"]: a for a in m["artifacts"]}
    rows = []
    for b in m["int8"]["bytes"]:
        q = arts[b["int8"]]["quality"]
        rows.append({**b, "auc_fp32": q["reference"], "auc_int8": q["value"], "auc_drop": q["drop"],
                     "int8_mode": arts[b["int8"]].get("int8_mode"),
                     "embedding_tables": arts[b["int8"]].get("embedding_tables")})
    cands = [{"name": c["name"], "runtime": c["runtime"], "auc_drop": (c.get("quality") or {}).get("drop"),
              "rejected": c.get("rejected")} for c in m["int8"]["candidates"]]
    fp32 = arts["model.onnx"]["verification"]
    print(f"model.onnx inputs {m['inputs'][0]['name']}:{m['inputs'][0]['shape']}, max abs diff to torch "
          f"{fp32['max_abs_diff']:.2e} on edgeopt's verification samples")
    for r in rows:
        print(f"{r['int8']:26s} {r['bytes']:>9,d} B vs {r['fp32_bytes']:>9,d} B FP32 = {r['ratio']:.3f}x   "
              f"AUC {r['auc_fp32']:.4f} -> {r['auc_int8']:.4f} (drop {r['auc_drop']:+.4f})  {r['int8_mode']}")
    for c in cands:
        print(f"  candidate {c['name']:14s} {c['runtime']:12s} drop {c['auc_drop']}  {c['rejected'] or ''}")
    if args.json:
        args.json.write_text(json.dumps({"vocab": args.vocab, "rows": args.rows, "held": args.held,
                                         "fp32_onnx_max_abs_diff": fp32["max_abs_diff"], "kept": rows,
                                         "candidates": cands}, indent=2) + "\n")


if __name__ == "__main__":
    main()
