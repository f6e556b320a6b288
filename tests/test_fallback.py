"""The gate's search for the smallest FP32 fallback, on synthetic models."""

from pathlib import Path

from edgeopt.optimize.metrics import Quality
from edgeopt.optimize.quantize.accuracy_gate import fallback_search


def _setup(needed: int):
    """A model that passes once its `needed` most sensitive nodes are FP32."""
    builds = []
    ranking = [f"n{i}" for i in range(40)]

    def build(excluded):
        builds.append(len(excluded))
        return Path(f"/nonexistent/{len(excluded)}")

    def score(path):
        k = int(path.name)
        drop = max(0.0, 0.02 * (needed - k))
        return Quality("cosine", 1 - drop, 1.0, drop, {"min": 1 - drop})

    return build, score, (lambda q: q.drop <= 0.0), ranking, builds


def test_finds_the_smallest_fallback():
    for needed in (0, 1, 3, 5, 17):
        build, score, passes, ranking, builds = _setup(needed)
        k, tried = fallback_search(build, score, passes, ranking, limit=20)
        assert k == needed
        assert len(builds) <= 2 * 5 + 2  # doubling then bisection, not one build per node


def test_gives_up_beyond_the_limit():
    build, score, passes, ranking, _ = _setup(30)
    k, tried = fallback_search(build, score, passes, ranking, limit=20)
    assert k is None and max(tried) == 20


def test_reuses_attempts_already_made():
    build, score, passes, ranking, builds = _setup(2)
    first = (Path("/nonexistent/0"), score(Path("/nonexistent/0")))
    k, _ = fallback_search(build, score, passes, ranking, limit=20, tried={0: first})
    assert k == 2 and 0 not in builds


def test_gated_skips_the_search_when_the_all_int8_model_is_not_viable():
    from edgeopt.optimize.quantize.accuracy_gate import gated_search

    build, score, passes, ranking, builds = _setup(3)
    looked = []

    def viable(path):
        looked.append(path)
        return "not faster than FP32 (1.36x)"

    cand = gated_search("static", "onnxruntime", build=build, score=score, passes=passes,
                        ranking_fn=lambda first: ranking, n_nodes=40, max_fallback=0.5, log=print, viable=viable)
    assert builds == [0] and looked == [Path("/nonexistent/0")]
    assert not cand.passed and cand.skipped.startswith("not faster") and cand.attempts == 1
    build, score, passes, ranking, builds = _setup(3)
    cand = gated_search("static", "onnxruntime", build=build, score=score, passes=passes,
                        ranking_fn=lambda first: ranking, n_nodes=40, max_fallback=0.5, log=print,
                        viable=lambda path: None)
    assert cand.passed and cand.fallback_nodes == ranking[:3] and builds[0] == 0 and len(builds) > 1


class _Session:
    def __init__(self, table, log):
        self.table, self.log = table, log

    def run(self, feeds):
        rows = feeds["i"][:, 0]
        self.log.append(int(rows[0]) // 10)  # batch index (batches of 10)
        return {"y": self.table[rows]}


def _scorer(tables, max_drop=0.01, min_cosine=0.98):
    """A Scorer over 50 samples in batches of 10, whose 'models' are rows of precomputed outputs."""
    import numpy as np

    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.quantize.accuracy_gate import Scorer

    data = Dataset([{"i": np.array([[i]])} for i in range(50)], source="t")
    ran: list[int] = []

    class Fake(Scorer):
        def _session(self, path, runtime, precision):
            if self._batches is None:
                self._batches = [feeds for feeds, _ in self.data.batches(self.batch_size)]
            return _Session(tables[path.name], ran)

    passes = lambda q: q.drop <= max_drop + 1e-12 and q.details["min"] >= min_cosine  # noqa: E731
    s = Fake(data, "y", "cosine", passes, batch_size=10, max_drop=max_drop, min_cosine=min_cosine)
    s.set_reference(Path("ref"))
    ran.clear()
    return s, ran


def _tilted(ref, angles):
    """Rows of ``ref`` turned by ``angles`` (radians) in the plane of their first two axes."""
    import numpy as np

    out = ref.copy()
    out[:, 0] = ref[:, 0] * np.cos(angles) - ref[:, 1] * np.sin(angles)
    out[:, 1] = ref[:, 0] * np.sin(angles) + ref[:, 1] * np.cos(angles)
    return out


def test_screen_stops_once_the_gate_certainly_fails_and_runs_hard_batches_first():
    import numpy as np

    rng = np.random.default_rng(0)
    ref = np.zeros((50, 4))
    ref[:, 0] = 1.0
    ref[:, 2:] = rng.normal(size=(50, 2)) * 0.1
    angles = np.full(50, 0.05)  # cosine ~0.9988 each: passes max_drop 0.01
    bad_one = angles.copy()
    bad_one[33] = 0.5  # cosine ~0.88 on one sample in batch 3
    tables = {"ref": ref, "good": _tilted(ref, angles), "bad_one": _tilted(ref, bad_one),
              "drifting": _tilted(ref, np.full(50, 0.2))}  # cosine ~0.98 each: mean drop 0.02 > 0.01
    scorer, ran = _scorer(tables)
    full = scorer(Path("good"))
    ran.clear()
    q = scorer.screen(Path("good"))  # a passing model is scored on every sample, as by __call__
    assert scorer.passes(q) and q.value == full.value and q.details == full.details and sorted(ran) == [0, 1, 2, 3, 4]
    ran.clear()
    q = scorer.screen(Path("bad_one"))
    assert not scorer.passes(q) and q.details["partial"] and q.details["samples"] == 10 * len(ran)
    assert ran[-1] == 3 and len(ran) == len(set(ran)) < 5  # it stops right after the batch with the bad sample
    assert "cosine is 0.88" in q.details["stopped"] and not scorer.passes(scorer(Path("bad_one")))
    ran.clear()
    scorer.screen(Path("bad_one"))
    assert ran == [3]  # the batch that failed last time runs first
    ran.clear()
    q = scorer.screen(Path("drifting"))  # no sample below 0.98, but the mean cannot pass: 0.02 x 30 > 0.01 x 50
    assert not scorer.passes(q) and q.details["partial"] and len(ran) == 3 and "drops so far" in q.details["stopped"]


def test_screen_gives_the_verdict_of_the_whole_set():
    import numpy as np

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(50, 8))
    for trial in range(40):
        scale = rng.choice([0.01, 0.05, 0.1, 0.2])
        tables = {"ref": ref, "m": ref + rng.normal(size=ref.shape) * scale * rng.random((50, 1))}
        scorer, _ = _scorer(tables, max_drop=float(rng.choice([0.001, 0.005, 0.02])),
                            min_cosine=float(rng.choice([0.9, 0.98])))
        assert scorer.passes(scorer.screen(Path("m"))) == scorer.passes(scorer(Path("m")))


def test_gated_scores_partial_attempts_in_full_when_none_passes():
    from edgeopt.optimize.quantize.accuracy_gate import gated_search

    calls = []

    class Score:
        def __call__(self, path):
            calls.append(("full", path.name))
            k = int(path.name)
            drop = 0.01 + 0.001 * (2.6 - k) ** 2  # closest at k = 2
            return Quality("cosine", 1 - drop, 1.0, drop, {"min": 0.99})

        def screen(self, path):
            calls.append(("screen", path.name))
            return Quality("cosine", 0.5, 1.0, 0.5, {"min": 0.5, "partial": True, "samples": 1, "of": 9,
                                                    "stopped": "test"})

    cand = gated_search("static", "onnxruntime", build=lambda ex: Path(f"/nonexistent/{len(ex)}"), score=Score(),
                        passes=lambda q: q.drop <= 0.005, ranking_fn=lambda first: [f"n{i}" for i in range(8)],
                        n_nodes=8, max_fallback=0.5, log=print)
    screened = [p for how, p in calls if how == "screen"]
    assert screened == ["0", "1", "2", "4"] and not cand.passed  # limit 4: the search gives up
    assert sorted(p for how, p in calls if how == "full") == screened  # then every attempt in full
    assert cand.fallback_nodes == ["n0", "n1"] and not cand.quality.details.get("partial")


def _token_model(path: Path, batch):
    """input_ids [batch, seq] -> y [batch, 2]: each row's mean token id and its length's square."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["mean"], keepdims=1, axes=[1]),
             helper.make_node("Mul", ["mean", "mean"], ["sq"]),
             helper.make_node("Concat", ["mean", "sq"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64,
                                                                         [batch, "seq"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_the_fp32_reference_runs_text_of_one_length_together(tmp_path):
    """Same rows as one sample per call, in the samples' order, in one call per length; a model
    with a fixed batch of 1 still gets its reference, one sample at a time."""
    import numpy as np

    from edgeopt.data.dataset import Dataset
    from edgeopt.optimize.quantize import accuracy_gate as gate
    from edgeopt.optimize.quantize.accuracy_gate import Scorer

    rng = np.random.default_rng(0)
    samples = [{"input_ids": rng.integers(1, 100, (1, n)).astype(np.int64)} for n in rng.integers(3, 7, 40)]
    data = Dataset(samples, kind="text", pad_values={"input_ids": 0})
    lengths = {s["input_ids"].shape[1] for s in samples}
    for batch in ("batch", 1):
        model = _token_model(tmp_path / f"m{batch}.onnx", batch)
        scorer = Scorer(data, "y", "cosine", lambda q: True)
        ran = []
        real = scorer._session

        def counting(path, runtime, precision, real=real, ran=ran):
            session = real(path, runtime, precision)
            run = session.run
            session.run = lambda feeds: (ran.append(len(feeds["input_ids"])), run(feeds))[1]
            return session

        scorer._session = counting
        scorer.set_reference(model)
        if batch == "batch":  # one call per length
            assert len(ran) == len(lengths) and sum(ran) == len(samples), ran
        else:  # the first grouped call fails: then one by one
            assert ran[-len(samples):] == [1] * len(samples) and len(ran) == len(samples) + 1, ran
        one_by_one = scorer.outputs(model)
        assert scorer.reference.shape == (len(samples), 2)
        np.testing.assert_allclose(scorer.reference, one_by_one, rtol=1e-6)
    assert gate.REFERENCE_BATCH >= 2
