"""ONNX Runtime's INT8 ladder: static QDQ, dynamic INT8 (per-token nodes, SmoothQuant), blockwise
INT8, and static QDQ again for a transformer when it was skipped for speed and nothing else passed.
Every candidate that passes goes to the speed check (ladder.keep_fastest)."""

from __future__ import annotations

import time
from pathlib import Path

from edgeopt.errors import UsageError
from edgeopt.optimize.quantize import ort
from edgeopt.optimize.quantize.accuracy_gate import describe_score, gated_search
from edgeopt.optimize.quantize.candidate import Blockwise, DynamicInt8, Int8Candidate, StaticQdq
from edgeopt.optimize.quantize.ladder import LadderContext, Rung


class StaticBuilder:
    """Static QDQ models of ``ctx.fp32_onnx`` with any set of nodes left FP32, and the sensitivity
    ranking the fallback search uses (from the all-INT8 model, built once)."""

    def __init__(self, ctx: LadderContext):
        self.ctx, self.all_int8, self._ranking = ctx, None, None

    def build(self, excluded: list[str]) -> Path:
        ctx, path = self.ctx, self.ctx.scratch("static")
        if ctx.transformer:  # NNCF's SmoothQuant + transformer rules (onnxruntime's quantizer loses MiniLM)
            ctx.log(f"static INT8 with NNCF ({len(ctx.calib)} calibration samples, {len(excluded)} FP32 nodes)")
            ort.nncf_qdq(ctx.fp32_onnx, path, ctx.calib, transformer=True, exclude=excluded)
        else:
            ctx.log(f"static INT8 ({ctx.cfg.calib_method} calibration on {len(ctx.calib)} samples, "
                    f"{len(excluded)} FP32 nodes)")
            # asymmetric activations run faster in onnxruntime (ReLU folds away) but are not
            # TensorRT-ready: symmetric only when TensorRT is a target
            from edgeopt.optimize.quantize.embeddings import has_tables

            # embedding tables (CTR rankers, recommenders) are most of such a model's bytes
            op_types = (*ort.STATIC_OPS, "Gather") if has_tables(ctx.fp32_onnx) else ort.STATIC_OPS
            ort.quantize_static_qdq(ctx.fp32_onnx, path, ctx.calib, method=ctx.cfg.calib_method, exclude=excluded,
                                    cache=ctx.work / "calibration-cache.json", progress=ctx.log,
                                    symmetric=ctx.want_qdq, op_types=op_types)
        if not excluded:
            self.all_int8 = path
        return path

    def ranking(self, _first=None) -> list[str]:
        """Nodes by the SQNR of their inputs in the all-INT8 model (most sensitive first)."""
        if self._ranking is None:
            qdq = self.all_int8 if self.all_int8 is not None and self.all_int8.exists() else self.build([])
            self.ctx.log("ranking nodes by quantization sensitivity")
            self._ranking = ort.qdq_sensitivity(self.ctx.fp32_onnx, qdq, self.ctx.calib, self.ctx.nodes)
        return self._ranking


def _static(ctx: LadderContext, viable=None) -> Int8Candidate:
    builder = StaticBuilder(ctx)
    cand = gated_search("static", "onnxruntime", build=builder.build, score=ctx.scorer, passes=ctx.passes,
                        ranking_fn=builder.ranking, n_nodes=len(ctx.nodes), max_fallback=ctx.cfg.max_fallback,
                        log=ctx.log, viable=viable)
    # NNCF (transformers) is symmetric; onnxruntime's quantizer only when TensorRT is a target
    cand.recipe = StaticQdq("symmetric" if ctx.transformer or ctx.want_qdq else "asymmetric")
    return cand


def static_skipped_for_speed(ctx: LadderContext) -> bool:
    """A transformer in ONNX Runtime: static QDQ measured 3x slower than dynamic INT8 on CPU and
    costs ~25 s to calibrate; auto builds it first only for TensorRT, which needs Q/DQ (OpenVINO
    INT8 then comes from NNCF on the fused-attention IR)."""
    return ctx.cfg.mode == "auto" and ctx.transformer and ctx.fused_attention and not ctx.want_qdq


def _static_if_faster(ctx: LadderContext) -> Int8Candidate:
    """Static QDQ tried last (skipped for speed, not quality): no fallback search when even the
    all-INT8 model is not faster than FP32, since FP32 nodes only add to its latency."""
    from edgeopt.optimize.quantize import speed

    ctx.log("dynamic and blockwise INT8 failed the gate; trying static INT8")

    def faster_than_fp32(path):
        ratio = speed.vs_fp32(path, ctx.fp32_onnx, ctx.evald, ctx.threads, ctx.log, threshold=1.0)
        return None if ratio < 1 else (f"not faster than FP32 ({ratio:.2f}x) even all-INT8, and FP32 "
                                       "fallback nodes would only add to that")

    return _static(ctx, viable=faster_than_fp32)


def _dynamic(ctx: LadderContext) -> Int8Candidate:
    """Dynamic INT8 on the graph with SmoothQuant at its LayerNorm-fed inputs; the fallback search
    puts nodes per token instead of in FP32 (any number may go), and when every choice fails,
    SmoothQuant at every node with all of them per token (_fully_smoothed)."""
    source, smoothing = _layernorm_smoothed(ctx)
    variants, ranking = None, None

    def build(per_token: list[str]) -> Path:
        nonlocal variants
        ctx.log(f"dynamic INT8 ({len(per_token)} nodes per-token)")
        if variants is None:  # quantized once; each attempt rewrites its per-token nodes
            variants = ort.DynamicVariants(source, ctx.work / "dynamic-base.onnx")
        return variants(per_token, ctx.scratch("dynamic"))

    def rank(_first=None) -> list[str]:
        """Nodes by the SQNR of their inputs after a per-call uint8 round trip (one FP32 run)."""
        nonlocal ranking
        if ranking is None:
            ctx.log("ranking nodes by dynamic-quantization sensitivity")
            ranking = ort.dynamic_sensitivity(source, ctx.calib, ctx.dynamic_nodes)
        return ranking

    cand = gated_search("dynamic", "onnxruntime", build=build, score=ctx.scorer, passes=ctx.passes, ranking_fn=rank,
                        n_nodes=len(ctx.dynamic_nodes), max_fallback=1.0, log=ctx.log)
    cand.recipe = DynamicInt8(cand.fallback_nodes, smoothing, fused_graph=ctx.dynamic_source != ctx.fp32_onnx)
    cand.fallback_nodes = []  # per-token nodes stay INT8
    return cand if cand.passed else _fully_smoothed(ctx, cand)


def _layernorm_smoothed(ctx: LadderContext) -> tuple[Path, dict | None]:
    """The dynamic search's source graph: SmoothQuant scaling in front of the nodes that read a
    LayerNorm output, and its manifest record; the plain graph and None when there are none.
    Their outlier channels are what per-token scales cannot fix, and each costs one Mul, where a
    per-token node costs five small ops."""
    from edgeopt.optimize.quantize import smooth

    path = ctx.work / "dynamic-smoothed-fp32.onnx"
    done = smooth.smooth_file(ctx.dynamic_source, path, ctx.calib, layernorm_only=True)
    if not done:
        return ctx.dynamic_source, None
    ctx.log(f"dynamic INT8: SmoothQuant scaling in front of {len(done)} LayerNorm-fed node(s)")
    return path, {"alpha": smooth.ALPHA, "nodes": len(done), "inputs": "layernorm"}


def _fully_smoothed(ctx: LadderContext, dynamic: Int8Candidate) -> Int8Candidate:
    """SmoothQuant channel scaling (smooth.py) at every node, all of them per token; the better of
    this and ``dynamic``."""
    from edgeopt.optimize.quantize import smooth

    t, path = time.perf_counter(), ctx.scratch("dynamic")
    ctx.log("dynamic INT8: SmoothQuant channel scaling with every node per token")
    fp32 = path.with_name(path.stem + "-fp32.onnx")
    smoothed = smooth.smooth_file(ctx.dynamic_source, fp32, ctx.calib)
    if not smoothed:
        fp32.unlink(missing_ok=True)
        return dynamic
    nodes = ctx.dynamic_nodes
    ort.quantize_dynamic_int8(fp32, path, per_token=nodes)
    fp32.unlink()
    q = ctx.scorer(path)
    ctx.log(f"INT8 with SmoothQuant and {len(nodes)} node(s) per token: {describe_score(q)}")
    recipe = DynamicInt8(list(nodes), {"alpha": smooth.ALPHA, "nodes": len(smoothed)},
                         fused_graph=dynamic.recipe.fused_graph)
    cand = Int8Candidate("dynamic", path, "onnxruntime", q, [], ctx.passes(q),
                         dynamic.seconds + time.perf_counter() - t, dynamic.attempts + 1, recipe=recipe,
                         quantizable_nodes=dynamic.quantizable_nodes)
    if cand.passed or dynamic.quality is None or q.drop < dynamic.quality.drop:
        dynamic.path.unlink(missing_ok=True)
        return cand
    path.unlink(missing_ok=True)
    return dynamic


def _blockwise(ctx: LadderContext) -> Int8Candidate | None:
    """Blockwise INT8 (ort.quantize_blockwise, MatMulNBits), block sizes from coarse (fast) to fine
    (accurate); the first that passes, else the closest. None when no weight node is a MatMul or,
    as a rung (not asked for by --int8-mode blockwise), when fewer than half are (a CNN: its
    convolutions would stay FP32)."""
    asked, n_nodes = ctx.cfg.mode == "blockwise", len(ctx.nodes)
    t, best = time.perf_counter(), None
    for i, block in enumerate(ort.BLOCK_SIZES):
        ctx.log(f"blockwise INT8 (MatMulNBits), blocks of {block}")
        path = ctx.work / f"blockwise-{block}.onnx"
        converted = ort.quantize_blockwise(ctx.fp32_onnx, path, block)
        if not converted and asked:
            raise UsageError(f"--int8-mode blockwise quantizes MatMul weights, and none of this model's {n_nodes} "
                             "weight nodes is a MatMul (convolutions?): use --int8-mode auto or static")
        if not converted or (converted * 2 < n_nodes and not asked):
            path.unlink(missing_ok=True)
            ctx.log(f"blockwise INT8: {converted} of {n_nodes} weight nodes are MatMuls; not tried")
            return None
        q = ctx.scorer(path)
        ctx.log(f"blockwise INT8, blocks of {block}: {describe_score(q)}")
        cand = Int8Candidate("blockwise", path, "onnxruntime", q, passed=ctx.passes(q), recipe=Blockwise(block),
                             quantizable_nodes=n_nodes)
        if best is None or cand.passed or q.drop < best.quality.drop:
            if best is not None:
                best.path.unlink(missing_ok=True)
            best = cand
        else:
            path.unlink(missing_ok=True)
        if cand.passed:
            break
    best.seconds, best.attempts = time.perf_counter() - t, i + 1  # for all the block sizes tried
    return best


def _none_passed(done: list[Int8Candidate]) -> bool:
    return not any(c.passed for c in done)


ORT_LADDER = (
    Rung("static", "onnxruntime", build=_static,
         applies=lambda ctx, done: ctx.cfg.mode == "static" or (ctx.cfg.mode == "auto"
                                                                and not static_skipped_for_speed(ctx))),
    Rung("dynamic", "onnxruntime", build=_dynamic, applies=lambda ctx, done: ctx.cfg.mode in ("auto", "dynamic")),
    # the finest INT8 form onnxruntime runs on CPU: a scale per block of each row, no search
    Rung("blockwise", "onnxruntime", build=_blockwise,
         applies=lambda ctx, done: ctx.cfg.mode == "blockwise" or (ctx.cfg.mode in ("auto", "dynamic")
                                                                   and _none_passed(done))),
    Rung("static", "onnxruntime", build=_static_if_faster,
         applies=lambda ctx, done: static_skipped_for_speed(ctx) and _none_passed(done)),
)
