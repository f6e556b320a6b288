"""``edgeopt.bench(artifact, ...)``: the bench command as one Python call (the CLI calls it too):
the measurements and, against a baseline, the CI regression gate's verdict."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from edgeopt.bench.regression import GateRow


@dataclass
class BenchResult:
    document: dict  # the benchmark JSON (DESIGN.md), with "gate" when a baseline was given
    gate_rows: "list[GateRow]" = field(default_factory=list)
    failure: str | None = None  # why the gate failed: a regression, or a measurement not taken (exit 1)

    @property
    def passed(self) -> bool:
        return self.failure is None


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    return [t.strip() for t in items if t.strip()] or None


def bench(artifact: str | os.PathLike, *, runtimes: str | Sequence[str] | None = None,
          targets: str | Sequence[str] = ("cpu",), profiles_file: str | os.PathLike | None = None,
          batches: str | Sequence[int] = (1,), seq_len: int = 64, cold_runs: int = 5, repeats: int = 5,
          seconds: float = 0.5, warmup: float = 0.2, concurrency: str | Sequence[int] = (1,),
          threads: int | None = None, cache_modes: bool = True, drop_caches: bool = False,
          baseline: str | os.PathLike | None = None, max_regression: float | None = None, confidence: float = 0.95,
          gate_metric: str = "cpu", normalize: bool = True, arch: str | None = None, arch_kwargs: str | None = None,
          trust_pickle: bool = False, inputs: Sequence[str] = (),
          log: Callable[[str], None] = lambda m: None) -> BenchResult:
    """Benchmark ``artifact`` (an .onnx, OpenVINO .xml, TensorRT .plan, an export folder, a
    .edgepkg bundle, a torch model, or a served model's http://HOST:PORT/v2/models/NAME) and, with ``baseline`` (a previous benchmark JSON), gate
    on regressions beyond ``max_regression`` percent (default 10). The keywords are the CLI's
    flags. Raises ``edgeopt.errors.UsageError`` on bad input."""
    from edgeopt.bench.records import failed_measurements, read_document
    from edgeopt.bench.regression import compare, regressions
    from edgeopt.bench.run import BenchOptions, run_bench
    from edgeopt.errors import UsageError

    if max_regression is not None and baseline is None:
        raise UsageError("--max-regression needs --baseline FILE")
    if max_regression is not None and max_regression < 0:
        raise UsageError(f"--max-regression must be >= 0, got {max_regression}")
    if not 0.5 <= confidence < 1:
        raise UsageError(f"--confidence must be in [0.5, 1), got {confidence}")
    if cold_runs < 1:
        raise UsageError(f"--cold-runs must be >= 1 (each is one fresh process), got {cold_runs}")
    base = read_document(baseline) if baseline is not None else None
    opts = BenchOptions(runtimes=_names(runtimes), targets=_names(targets) or [],
                        batches=batches if isinstance(batches, str) else list(batches), seq_len=seq_len,
                        cold_runs=cold_runs, repeats=repeats, seconds=seconds, warmup=warmup,
                        concurrency=concurrency if isinstance(concurrency, str) else list(concurrency),
                        threads=threads, cache_modes=cache_modes, drop_caches=drop_caches,
                        profiles_file=str(profiles_file) if profiles_file else None,
                        model_options={"arch": arch, "arch_kwargs": arch_kwargs, "trust_pickle": trust_pickle,
                                       "inputs": list(inputs)})
    doc = run_bench(artifact, opts, log=log)
    failed = failed_measurements(doc["records"])
    if failed:  # nothing was measured for these: the command (and a CI gate) must not pass
        doc["failed_measurements"] = failed
    unmeasured = (f"{len(failed)} measurement(s) could not be taken, so nothing was measured for them; "
                  f"first: {failed[0]}") if failed else None
    if base is None:
        return BenchResult(doc, failure=unmeasured)
    pct = 10.0 if max_regression is None else max_regression
    rows = compare(doc["records"], base["records"], max_regression=pct, confidence=confidence, normalize=normalize,
                   metric=gate_metric)
    bad = regressions(rows)
    doc["gate"] = {"baseline": str(baseline), "max_regression_pct": pct, "confidence": confidence,
                   "metric": gate_metric, "normalized": normalize, "rows": [r.to_json() for r in rows],
                   "passed": not bad}
    failure = unmeasured if not bad else (f"{len(bad)} record(s) slower than {baseline} by more than {pct:g}% (the "
                                          "whole confidence interval beyond the threshold; see the table)")
    return BenchResult(doc, rows, failure)
