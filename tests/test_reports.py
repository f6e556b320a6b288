"""Typed reports (DistillReport, PruneReport, UpdateReport): what a run returns is what it wrote to
OUT/report.json, byte for byte, and the file keeps the keys, in the order, that bundles, `edgeopt
run`'s cache and the recipe's report have always read."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

TINY = f"{ROOT / 'tests' / 'tiny_models.py'}:resnet_tiny"
MLP = f"{ROOT / 'tests' / 'update_models.py'}:mlp"
TRAINING = ["epochs_run", "best_epoch", "best_score", "stopped_early", "resumed_at_epoch", "seconds", "processes",
            "history"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import resnet_tiny
    from update_models import mlp

    root = tmp_path_factory.mktemp("reports")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 64)
    x = (rng.standard_normal((64, 3, 32, 32)) + labels[:, None, None, None] * 0.1).astype(np.float32)
    np.savez(root / "images.npz", image=x, labels=labels)
    torch.manual_seed(0)
    torch.save(resnet_tiny(num_classes=10, width=16).state_dict(), root / "teacher.pt")
    torch.save(resnet_tiny(num_classes=10, width=8).state_dict(), root / "student.pt")
    feats = rng.standard_normal((200, 8)).astype(np.float32)
    np.savez(root / "old.npz", x=feats[:120], labels=(feats[:120, 0] > 0).astype(np.int64))
    np.savez(root / "new.npz", x=feats[120:], labels=(feats[120:, 1] > 0).astype(np.int64) + 4)
    torch.save(mlp().state_dict(), root / "mlp.pt")
    return root


def _spec(text):
    from edgeopt.spec import parse_input

    return [parse_input(text)]


def _written(result):
    """The report returned, as JSON, against the file the run wrote."""
    text = (result.out / "report.json").read_text()
    assert json.dumps(result.report.to_json(), indent=2) + "\n" == text
    return json.loads(text)


def test_distill_report_is_what_report_json_holds(files, tmp_path):
    from edgeopt.distill import distill
    from edgeopt.distill.report import DistillReport

    r = distill(teacher=files / "teacher.pt", teacher_arch=TINY, teacher_arch_kwargs={"width": 16},
                student=files / "student.pt", student_arch=TINY, student_arch_kwargs={"width": 8},
                inputs=_spec("image:1x3x32x32:float32"), data=files / "images.npz", out=tmp_path / "d", epochs=1,
                latency=False, progress=False)
    doc = _written(r)
    assert isinstance(r.report, DistillReport) and r.report.quality.samples == doc["quality"]["samples"] == 6
    assert list(doc) == ["task", "teacher", "student", "data", "settings", "training", "quality"]
    assert list(doc["teacher"]) == ["source", "family", "parameters", "bytes"]  # no layers / latency: not measured
    assert list(doc["student"]) == ["source", "parameters", "bytes"]
    assert list(doc["settings"]) == ["epochs", "batch_size", "lr", "alpha", "temperature", "loss", "augment", "seed"]
    assert list(doc["training"]) == TRAINING and list(doc["quality"]) == ["samples", "student", "teacher"]
    assert r.report.table_rows()[0] == ("parameters", f"{doc['teacher']['parameters'] / 1e6:.2f} M",
                                        f"{doc['student']['parameters'] / 1e6:.2f} M")


def test_prune_report_is_what_report_json_holds_and_so_is_a_failed_gate(files, tmp_path):
    from edgeopt.errors import GateError
    from edgeopt.prune import prune
    from edgeopt.prune.report import PruneReport

    common = dict(model=files / "teacher.pt", arch=TINY, arch_kwargs={"width": 16},
                  inputs=_spec("image:1x3x32x32:float32"), progress=False, ratio=0.5, structured=True, round_to=4)
    r = prune(out=tmp_path / "p", data=files / "images.npz", recover_epochs=1, speed_check=False, **common)
    doc = _written(r)
    assert isinstance(r.report, PruneReport) and r.report.passed and doc["passed"] is True
    assert list(doc) == ["model", "method", "ratio", "target_speedup", "round_to", "round_to_reason", "importance",
                         "widths", "parameters", "macs", "runtime", "target", "data", "quality", "recovery", "bytes",
                         "passed"]
    assert list(doc["quality"]) == ["samples", "metric_vs", "before", "after_pruning", "after_recovery"]
    assert list(doc["recovery"]) == ["lr", "batch_size", "score_before", *TRAINING]  # the training record inline
    assert r.report.recovery.training.epochs_run == doc["recovery"]["epochs_run"] == 1

    with pytest.raises(GateError):
        prune(out=tmp_path / "slow", latency_fn=lambda m, label: {"p50_ms": 1.0}, **common)
    failed = json.loads((tmp_path / "slow" / "report.json").read_text())
    assert list(failed)[-3:] == ["latency", "gate", "passed"] and failed["passed"] is False
    assert list(failed["gate"]) == ["applies", "passed", "ratio", "limit", "reason"]
    assert list(failed["latency"]["onnxruntime"]) == ["unpruned", "pruned", "ratio"]


def test_update_report_is_what_report_json_holds(files, tmp_path):
    from edgeopt.update import update
    from edgeopt.update.report import Candidate, UpdateReport

    r = update(model=files / "mlp.pt", arch=MLP, inputs=_spec("x:batchx8:float32"), data=files / "new.npz",
               old_data=files / "old.npz", out=tmp_path / "u", method="lwf", epochs=1, progress=False)
    doc = _written(r)
    assert isinstance(r.report, UpdateReport) and isinstance(r.report.tried[0], Candidate)
    assert list(doc) == ["method", "task", "metric", "strength", "output_kind", "model", "data", "before", "after",
                         "forgetting", "new_gain", "max_forgetting", "passed", "compute", "settings", "training",
                         "tried", "compact_delta"]
    assert doc["model"]["grew"]["output"]["to"] == 6 and r.report.model.grew == doc["model"]["grew"]
    assert list(doc["compute"]) == ["seconds", "train_samples_seen", "extra_forward_samples", "candidates"]
    assert doc["forgetting"] == r.forgetting == r.report.forgetting
    meta = json.loads((tmp_path / "u" / "model.json").read_text())
    assert meta["update"] == {"method": "lwf", "metric": doc["metric"], "forgetting": doc["forgetting"]}
