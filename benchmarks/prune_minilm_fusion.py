"""Diagnostic: how much of the pruned MiniLM's speed onnxruntime's graph fusions give or take.

    python benchmarks/prune_minilm_fusion.py WORK    # WORK: a prune_minilm.py --rounds work folder

Loads WORK/unpruned-export/model.onnx and WORK/pruned-export/model.onnx in one process, once with
onnxruntime's basic graph optimizations and once with all of them (what edgeopt's runtime uses), and
times 30-call bursts of one ~47-token title, alternating the two models, 15 rounds (2 threads).
A diagnostic of one effect, not a benchmark of record: the ratios of record come from
prune_minilm.py's interleaved run, each model in its own process.
"""

import sys
import time
from pathlib import Path

import numpy as np


def main():
    import onnxruntime as ort

    from edgeopt.runtime.text import TextEncoder

    work = Path(sys.argv[1])
    tok = TextEncoder(work / "unpruned-export" / "tokenizer", max_length=64)
    feeds_all = tok(["stainless steel dinner plates set of six and more products for kitchen and garden tools " * 3])
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    for name, level in levels.items():
        sessions = {}
        for model in ("unpruned-export", "pruned-export"):
            so = ort.SessionOptions()
            so.graph_optimization_level, so.intra_op_num_threads = level, 2
            s = ort.InferenceSession(str(work / model / "model.onnx"), so, providers=["CPUExecutionProvider"])
            feeds = {k: v for k, v in feeds_all.items() if k in {i.name for i in s.get_inputs()}}
            for _ in range(20):
                s.run(None, feeds)
            sessions[model] = (s, feeds)
        times = {m: [] for m in sessions}
        for _ in range(15):
            for m, (s, feeds) in sessions.items():
                t = time.perf_counter()
                for _ in range(30):
                    s.run(None, feeds)
                times[m].append((time.perf_counter() - t) / 30 * 1000)
        p50 = {m: float(np.median(v)) for m, v in times.items()}
        print(f"{name}: unpruned {p50['unpruned-export']:.2f} ms, pruned {p50['pruned-export']:.2f} ms, "
              f"ratio {p50['pruned-export'] / p50['unpruned-export']:.3f}")


if __name__ == "__main__":
    main()
