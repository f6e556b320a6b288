"""Sequence-length buckets: static-shape OpenVINO variants of text models (backends/buckets.py,
export/bucket_checks.py), on real small BERTs with MiniLM's tokenizer."""

import json

import numpy as np
import pytest

from edgeopt.backends.buckets import ShapeBuckets, default_lengths, parse_lengths, read_from_ir, sequence_feeds
from tests.conftest import hf_folder, run_cli

pytest.importorskip("openvino")


def test_buckets_serve_their_own_range_even_after_one_is_dropped():
    b = ShapeBuckets((8, 16, 32, 64), {"input_ids": 0})
    assert [b.bucket(n) for n in (1, 8, 9, 16, 17, 33, 64, 65)] == [8, 8, 16, 16, 32, 64, 64, None]
    kept = b.keep([8, 16, 64])
    # 17-32 tokens are not padded to 64 (4x the work): they run with dynamic shapes
    assert [kept.bucket(n) for n in (5, 12, 20, 32, 33, 64)] == [8, 16, None, None, 64, 64]
    assert ShapeBuckets.from_json(json.loads(json.dumps(kept.to_json()))) == kept
    assert b.keep([]) is None


def test_padding_uses_each_inputs_pad_value():
    b = ShapeBuckets((8,), {"input_ids": 7})
    feeds = {"input_ids": np.array([[101, 5, 102]]), "attention_mask": np.ones((1, 3), np.int64)}
    padded = b.pad_feeds(feeds, 8)
    assert padded["input_ids"].tolist() == [[101, 5, 102, 7, 7, 7, 7, 7]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert sequence_feeds(feeds) == 3
    assert sequence_feeds({"input_ids": feeds["input_ids"]}) is None  # no mask: padding would change results
    assert sequence_feeds({**feeds, "pixel_values": np.zeros((1, 3, 4, 4), np.float32)}) is None


@pytest.mark.parametrize("bad", ["8,x", "16,8", "0,8", "8,8", ""])
def test_bad_lengths_are_refused(bad):
    with pytest.raises(ValueError):
        parse_lengths(bad)


def test_default_lengths_are_powers_of_two_up_to_the_model_maximum():
    assert default_lengths(256) == (8, 16, 32, 64, 128, 256)
    assert default_lengths(100) == (8, 16, 32, 64, 100)


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("buckets") / "out"
    r = run_cli("export", tiny_bert, "-o", out, "--to", "onnx,openvino", "--shape-buckets", "8,16,32", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return out, json.loads(r.stdout)


def test_export_checks_each_bucket_and_writes_it_into_the_ir(exported):
    out, manifest = exported
    art = {a["path"]: a for a in manifest["artifacts"]}
    sb = art["openvino/model.xml"]["shape_buckets"]
    assert sb["enabled"] and sb["lengths"] == [8, 16, 32] and sb["pad"] == {"input_ids": 0}
    assert all(r["passed"] and r["max_abs_diff"] < 1e-3 for r in sb["checked"].values()), sb
    assert read_from_ir(out / "openvino" / "model.xml") == ShapeBuckets((8, 16, 32), {"input_ids": 0})
    assert "shape_buckets" not in art["model.onnx"]


def test_runtime_compiles_a_variant_once_a_bucket_is_in_use(exported):
    from edgeopt.backends import get_runtime
    from edgeopt.runtime.openvino import HOT_CALLS
    from edgeopt.runtime.text import TextEncoder

    out, _ = exported
    tok = TextEncoder(out / "tokenizer")
    session = get_runtime("openvino").load(str(out / "openvino" / "model.xml"))
    plain = get_runtime("openvino").load(str(out / "openvino" / "model.xml"), buckets=False)
    short, long = tok(["red running shoes"]), tok(["men navy blue slim fit t-shirt " * 12])
    assert short["input_ids"].shape[1] <= 8 and long["input_ids"].shape[1] > 32
    for _ in range(HOT_CALLS - 1):
        session.run(short)
    session.engine.settle()
    assert session.engine.variants == []  # a one-off length never costs a compile
    session.run(short)
    session.engine.settle()
    assert session.engine.variants == [(1, 8)]
    np.testing.assert_allclose(session.run(short)["logits"], plain.run(short)["logits"], atol=1e-5)
    pair = tok(["red running shoes", "blue jeans"])  # batch 2: buckets were checked at batch 1 only
    for _ in range(HOT_CALLS + 1):  # longer than every bucket, or batched: dynamic shapes, no variant
        np.testing.assert_allclose(session.run(long)["logits"], plain.run(long)["logits"], atol=1e-5)
        np.testing.assert_allclose(session.run(pair)["logits"], plain.run(pair)["logits"], atol=1e-5)
    session.engine.settle()
    assert session.engine.variants == [(1, 8)]


def test_variants_are_capped(exported):
    from edgeopt.backends import get_runtime
    from edgeopt.runtime.text import TextEncoder

    out, _ = exported
    tok = TextEncoder(out / "tokenizer")
    session = get_runtime("openvino").load(str(out / "openvino" / "model.xml"), max_variants=1)
    assert session.engine.prepare(tok(["red shoes"]))
    assert not session.engine.prepare(tok(["men navy blue slim fit cotton casual shirt with pockets"]))
    assert session.engine.variants == [(1, 8)]


def test_token_level_outputs_are_cut_back_to_the_input_length(minilm_path, tmp_path):
    from edgeopt.backends import get_runtime
    from edgeopt.runtime.text import TextEncoder

    folder = hf_folder(minilm_path, tmp_path / "tiny-bert", "BertModel")
    out = tmp_path / "out"
    r = run_cli("export", folder, "-o", out, "--to", "onnx,openvino", "--shape-buckets", "8,16", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    feeds = TextEncoder(out / "tokenizer")(["red running shoes"])
    xml = str(out / "openvino" / "model.xml")
    session, plain = get_runtime("openvino").load(xml), get_runtime("openvino").load(xml, buckets=False)
    assert session.engine.prepare(feeds)
    got, want = session.run(feeds), plain.run(feeds)
    assert set(got) == set(want) and "last_hidden_state" in got
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=1e-4)


def test_shape_buckets_off_writes_none(tiny_bert, tmp_path):
    r = run_cli("export", tiny_bert, "-o", tmp_path / "out", "--to", "onnx,openvino", "--shape-buckets", "off",
                "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    art = {a["path"]: a for a in json.loads(r.stdout)["artifacts"]}
    assert "shape_buckets" not in art["openvino/model.xml"]
    assert read_from_ir(tmp_path / "out" / "openvino" / "model.xml") is None


@pytest.mark.parametrize("spec, words", [("8,x", "comma-separated integers"), ("8,4096", "maximum length")])
def test_bad_shape_buckets_is_a_one_line_error(tiny_bert, tmp_path, spec, words):
    r = run_cli("export", tiny_bert, "-o", tmp_path / "out", "--shape-buckets", spec)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_bench_times_the_static_variant_and_says_so(exported):
    """Warm timing waits for the variant of the benchmarked shape; the record names it."""
    out, _ = exported
    r = run_cli("bench", out / "openvino" / "model.xml", "--seq-len", "12", "--cold-runs", "1", "--no-cache",
                "--repeats", "1", "--seconds", "0.1", "--json", "-")
    assert r.returncode == 0, r.stderr[-2000:]
    (rec,) = json.loads(r.stdout)["records"]
    assert rec["static_variants"] == [[1, 16]], rec.get("static_variants")
