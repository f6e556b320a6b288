"""The gate's search for the smallest FP32 fallback, on synthetic models."""

from pathlib import Path

from edgeopt.optimize.metrics import Quality
from edgeopt.optimize.quantize.gate import fallback_search


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
    from edgeopt.optimize.quantize.gate import gated

    build, score, passes, ranking, builds = _setup(3)
    looked = []

    def viable(path):
        looked.append(path)
        return "not faster than FP32 (1.36x)"

    cand = gated("static", "onnxruntime", build, score, passes, lambda first: ranking, 40, 0.5, print,
                 viable=viable)
    assert builds == [0] and looked == [Path("/nonexistent/0")]
    assert not cand.passed and cand.extra["skipped"].startswith("not faster") and cand.attempts == 1
    build, score, passes, ranking, builds = _setup(3)
    cand = gated("static", "onnxruntime", build, score, passes, lambda first: ranking, 40, 0.5, print,
                 viable=lambda path: None)
    assert cand.passed and cand.fallback_nodes == ranking[:3] and builds[0] == 0 and len(builds) > 1
