import numpy as np

from edgeopt.export.verify import Tolerance, compare


def test_identical_outputs_pass():
    ref = [{"y": np.random.default_rng(0).standard_normal((4, 8)).astype("float32")}]
    r = compare(ref, [dict(ref[0])], Tolerance(1e-4, 1e-4, 0.9999))
    assert r["passed"] and r["max_abs_diff"] == 0 and r["cosine_min"] > 0.999999


def test_perturbation_beyond_tolerance_fails():
    y = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    out = y.copy()
    out[1, 3] += 5e-3
    r = compare([{"y": y}], [{"y": out}], Tolerance(1e-4, 1e-4, 0.9999))
    assert not r["passed"] and abs(r["max_abs_diff"] - 5e-3) < 1e-6


def test_shape_mismatch_and_nan_fail():
    y = np.ones((2, 3), "float32")
    assert not compare([{"y": y}], [{"y": y[:1]}], Tolerance(1, 1, 0))["passed"]
    bad = y.copy()
    bad[0, 0] = np.nan
    assert "NaN" in compare([{"y": y}], [{"y": bad}], Tolerance(1, 1, 0))["error"]
