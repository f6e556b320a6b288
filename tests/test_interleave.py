"""Interleaved-burst timing (edgeopt/bench/interleave.py): the protocol, the ratios, the errors."""

import sys

import pytest

from edgeopt.bench.interleave import interleaved, ratios

CHILD = "from edgeopt.bench.interleave import serve; import time; serve(lambda: time.sleep({}), warmup=1)"


def test_every_candidate_gets_one_burst_per_round():
    commands = {name: [sys.executable, "-c", CHILD.format(s)] for name, s in (("a", 0.0005), ("b", 0.001))}
    seen = []
    per = interleaved(commands, rounds=3, runs=4, pause_s=0, progress=lambda r, last: seen.append((r, set(last))))
    assert set(per) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in per.values())
    assert seen == [(0, {"a", "b"}), (1, {"a", "b"}), (2, {"a", "b"})]


def test_ratios_are_per_round_medians_against_the_fastest_baseline():
    per = {"x": [2.0, 4.0, 3.0], "s1": [1.0, 2.0, 4.0], "s2": [2.0, 1.0, 2.0]}
    r = ratios(per, ["s1", "s2"])
    assert r["x"] == pytest.approx(2.0) and r["s2"] == pytest.approx(1.0)  # x: 2/1, 4/1, 3/2; s2: 2, 1, 1
    assert ratios(per, "s1")["x"] == pytest.approx(2.0)  # 2, 2, 0.75


def test_a_child_that_dies_is_reported_with_its_error():
    commands = {"ok": [sys.executable, "-c", CHILD.format(0)],
                "bad": [sys.executable, "-c", "raise SystemExit('cannot load model.onnx')"]}
    with pytest.raises(RuntimeError, match="bad: .*cannot load model.onnx"):
        interleaved(commands, rounds=1, runs=1)


def test_chatty_children_neither_block_nor_confuse_the_protocol():
    """A child that writes 1 MB to stderr and prints stray lines on stdout still serves bursts."""
    chatty = ("import sys; sys.stderr.write('w' * 1_000_000); print('[INFO] loaded'); "
              "from edgeopt.bench.interleave import serve; "
              "serve(lambda: print('[1, 2]') or sys.stderr.write('x' * 10_000), warmup=1)")
    per = interleaved({"chatty": [sys.executable, "-c", chatty]}, rounds=2, runs=20, pause_s=0)
    assert len(per["chatty"]) == 2


def test_until_ends_the_timing_after_the_round_it_says_so():
    commands = {name: [sys.executable, "-c", CHILD.format(0)] for name in ("a", "b")}
    per = interleaved(commands, rounds=10, runs=2, pause_s=0, until=lambda per: len(per["a"]) >= 3)
    assert [len(v) for v in per.values()] == [3, 3]


def test_settled_waits_for_unanimous_verdicts_clear_of_the_threshold():
    from edgeopt.optimize.quantize.speed import settled

    until = settled("fp32", 0.95)
    fast = {"int8": [3.0, 3.1, 2.9, 3.0], "fp32": [4.0, 4.2, 3.9, 4.1]}  # ~0.74x every round
    assert until(fast) and not until({k: v[:3] for k, v in fast.items()})  # 4 rounds at least
    slow = {"int8": [5.6, 5.9, 5.5, 5.8], "fp32": [4.0, 4.2, 3.9, 4.1]}  # ~1.4x
    assert until(slow)
    near = {"int8": [3.7, 3.8, 3.5, 3.9], "fp32": [4.0, 4.2, 3.9, 4.1]}  # 0.90-0.95x: too close to call
    assert not until(near)
    noisy = {"int8": [5.6, 4.2, 5.5, 5.8], "fp32": [4.0, 4.2, 3.9, 4.1]}  # one round at 1.0x: all slower, median 1.4x
    assert until(noisy)
    split = {"int8": [3.0, 5.0, 3.0, 3.0], "fp32": [4.0, 4.0, 4.0, 4.0]}  # one round says slower
    assert not until(split)
    # several candidates: their order must be the same in every round too
    two = {"a": [2.0, 2.1, 2.0, 2.1], "b": [3.0, 3.0, 3.1, 3.0], "fp32": [4.0, 4.0, 4.0, 4.0]}
    assert until(two)
    swapped = {"a": [2.0, 3.1, 2.0, 2.1], "b": [3.0, 3.0, 3.1, 3.0], "fp32": [4.0, 4.0, 4.0, 4.0]}
    assert not until(swapped)
    assert settled(None, 0.95)({"a": [2.0] * 4, "b": [3.0] * 4})  # no baseline: the order only
