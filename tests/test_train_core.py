"""The training core's shared helpers (edgeopt/train): outputs in sample order, held-out splits
(image folders stay lazy), OUT checks, class names, the held-out comparison, typed report JSON."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError


def _mean_embed():
    """A tiny text model: token embeddings, (batch, seq, 4); forward() pools them over the mask."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = torch.nn.Embedding(50, 4)

        def forward(self, input_ids, attention_mask):
            return self.emb(input_ids)

    return Net()


def _texts(lengths):
    rng = np.random.default_rng(0)
    samples = [{"input_ids": rng.integers(1, 50, (1, n)).astype(np.int64),
                "attention_mask": np.ones((1, n), dtype=np.int64)} for n in lengths]
    return Dataset(samples, kind="text", pad_values={"input_ids": 0, "attention_mask": 0})


def test_outputs_come_back_in_sample_order_whatever_the_batching():
    from edgeopt.train.batches import collate, forward
    from edgeopt.train.outputs import outputs

    net, ds = _mean_embed(), _texts([7, 2, 9, 3, 3, 12, 1, 5])
    names = ["input_ids", "attention_mask"]
    one_by_one = np.concatenate([forward(net, collate(ds, [i]), names).detach().numpy() for i in range(len(ds))])
    by_length = outputs(net, ds, names, batch=3)  # batches of similar length, written back in place
    in_order = outputs(net, ds, names, batch=3, by_length=False)
    assert by_length.shape == (8, 4)
    np.testing.assert_allclose(by_length, one_by_one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(in_order, one_by_one, rtol=1e-5, atol=1e-6)


def test_column_outputs_make_a_one_column_output_of_a_batch_output():
    import torch

    from edgeopt.train.outputs import column_outputs

    class Click(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)  # [batch]: a click score

    ds = Dataset([{"x": np.full((1, 3), i, dtype=np.float32)} for i in range(5)])
    out = column_outputs(Click(), ds, ["x"])
    assert out.shape == (5, 1) and out[:, 0].tolist() == [0, 3, 6, 9, 12]


def test_hold_out_keeps_image_folders_lazy_and_takes_the_same_samples_as_split():
    from edgeopt.data.images import LazyImages
    from edgeopt.train.split import eval_split, hold_out

    paths = [f"img{i}.png" for i in range(40)]
    labels = np.arange(40)
    lazy = Dataset(LazyImages(paths, "image", "NCHW", None), labels=labels, source="photos", kind="images")
    plain = Dataset([{"image": np.full((1, 1), i)} for i in range(40)], labels=labels, source="photos")
    train, held = hold_out(lazy, 0.1, seed=3)
    p_train, p_held = plain.split(0.1, seed=3)
    assert isinstance(train.samples, LazyImages) and isinstance(held.samples, LazyImages)  # nothing decoded
    assert held.labels.tolist() == p_held.labels.tolist() and train.labels.tolist() == p_train.labels.tolist()
    assert [list.__getitem__(held.samples, i) for i in range(len(held))] == [f"img{i}.png" for i in held.labels]
    _, capped = eval_split(plain, None, eval_size=2, seed=3)
    assert len(capped) == 2 and set(capped.labels) <= set(p_held.labels)
    given = Dataset([{"image": np.zeros((1, 1))}] * 9, labels=np.zeros(9))
    kept, evald = eval_split(plain, given, eval_size=5, seed=0)
    assert len(kept) == 40 and len(evald) == 5  # --eval given: all of --data trains
    with pytest.raises(UsageError, match="too few"):
        hold_out(Dataset(LazyImages(paths[:1], "image", "NCHW", None), labels=labels[:1], kind="images"), 0.1, 0)


def test_check_out_refuses_a_folder_that_is_not_an_earlier_output(tmp_path):
    from edgeopt.train.write import check_out

    check_out(tmp_path / "new", "prune")  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", "prune")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.json").write_text("{}")
    (earlier / "model.pt2").write_text("x")
    check_out(earlier, "prune")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_text("x")
    with pytest.raises(UsageError, match="not an earlier update output"):
        check_out(tmp_path / "photos", "update")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="-o .*file exists"):
        check_out(tmp_path / "file", "distill")


def test_class_names_are_the_sorted_class_folders(tmp_path):
    from edgeopt.train.write import class_names

    for name in ("shoes", "bags", "hats"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.txt").write_text("x")
    assert class_names(tmp_path) == ["bags", "hats", "shoes"]
    assert class_names(tmp_path / "README.txt") is None and class_names(None) is None


def test_compare_is_typed_and_leaves_out_what_was_not_measured():
    from edgeopt.train.outputs import compare

    teacher = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    student = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    c = compare("classify", teacher, student, np.array([0, 1, 0, 0]))
    assert c.student == {"agreement": 0.75, "top1": 0.5} and c.teacher == {"top1": 0.75}
    assert c.to_json() == {"samples": 4, "student": {"agreement": 0.75, "top1": 0.5}, "teacher": {"top1": 0.75}}
    unlabelled = compare("classify", teacher, student, None, untrained=teacher)
    assert unlabelled.to_json() == {"samples": 4, "student": {"agreement": 0.75},
                                    "untrained_student": {"agreement": 1.0}}


def test_report_json_keeps_field_order_nests_typed_parts_and_omits_unset_optional_keys(tmp_path):
    import json

    from edgeopt.train import TrainResult
    from edgeopt.train.report import Report, omitted, write_report

    @dataclass(frozen=True)
    class Part(Report):
        a: int
        b: str | None = omitted()

    @dataclass(frozen=True)
    class Whole(Report):
        z: Part
        parts: list[Part]
        training: TrainResult
        kept: str | None = None  # None but not omitted: written as null
        extra: dict | None = omitted()

    training = TrainResult(epochs_run=1, best_epoch=1, best_score=0.5, stopped_early=False, resumed_at_epoch=None,
                           seconds=1.23)
    w = Whole(z=Part(1), parts=[Part(2, "x")], training=training)
    doc = w.to_json()
    assert list(doc) == ["z", "parts", "training", "kept"]
    assert doc["z"] == {"a": 1} and doc["parts"] == [{"a": 2, "b": "x"}] and doc["training"]["seconds"] == 1.2
    path = write_report(tmp_path, w)
    assert path.read_text() == json.dumps(doc, indent=2) + "\n"


def _one_column(shape, task=None):
    from types import SimpleNamespace

    return SimpleNamespace(name="clicks.pt", metadata={"task": task} if task else {},
                           io=SimpleNamespace(outputs=[SimpleNamespace(shape=shape)]))


def test_a_one_column_model_with_0_1_labels_is_binary_else_the_task_must_be_given():
    from edgeopt.train.objectives import infer_task

    clicks = np.array([0, 1, 1, 0])
    assert infer_task(None, _one_column(("batch", 1)), True, clicks) == "binary"
    assert infer_task(None, _one_column(("batch",)), True, clicks.astype(np.float32)) == "binary"
    assert infer_task(None, _one_column(("batch", 3)), True, clicks) == "classify"
    assert infer_task("regress", _one_column(("batch", 1)), True, clicks) == "regress"  # --task wins
    assert infer_task(None, _one_column(("batch", 1), task="regress"), True, clicks) == "regress"  # as saved
    for labels in (np.array([0.0, 2.5, 1.0]), None):  # a score, or no labels: not a click model
        with pytest.raises(UsageError, match="cannot tell the task"):
            infer_task(None, _one_column(("batch", 1)), labels is not None, labels)


def test_prune_and_distill_read_a_one_column_model_with_0_1_labels_as_binary(tmp_path):
    import sys

    import torch

    from edgeopt.distill import distill
    from edgeopt.prune import prune
    from edgeopt.spec import parse_input
    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import mlp

    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 8)).astype(np.float32)
    np.savez(tmp_path / "clicks.npz", x=x, labels=(x[:, 0] > 0).astype(np.int64))
    torch.manual_seed(0)
    torch.save(mlp(classes=1).state_dict(), tmp_path / "ranker.pt")
    arch = f"{ROOT / 'tests' / 'update_models.py'}:mlp"
    common = dict(inputs=[parse_input("x:batchx8:float32")], data=tmp_path / "clicks.npz", progress=False)
    p = prune(model=tmp_path / "ranker.pt", arch=arch, arch_kwargs={"classes": 1}, out=tmp_path / "p", ratio=0.3,
              speed_check=False, **common)
    assert p.report.model.task == "binary" and set(p.report.quality.after_pruning) == {"agreement", "accuracy"}
    d = distill(teacher=tmp_path / "ranker.pt", teacher_arch=arch, teacher_arch_kwargs={"classes": 1},
                student=tmp_path / "ranker.pt", student_arch=arch, student_arch_kwargs={"classes": 1},
                out=tmp_path / "d", epochs=1, latency=False, **common)
    assert d.task == "binary" and "accuracy" in d.report.quality.teacher
