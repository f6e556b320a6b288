"""Every bad input: a one-line error, exit 2, no traceback, nothing left in -o."""

import pytest

from tests.conftest import TINY_ARCH, run_cli

CASES = {
    "missing file": (["does-not-exist.pt"], "no such model"),
    "truncated checkpoint": (["{truncated}", "--arch", TINY_ARCH, "--input", "x:1x3x32x32:float32"],
                             "not a readable PyTorch checkpoint"),
    "garbage onnx": (["{garbage_onnx}"], "is not an ONNX model"),
    "unknown format": (["{unknown}"], "unknown model format"),
    "state dict without arch": (["{resnet_pth}", "--input", "x:1x3x32x32:float32"], "pass --arch"),
    "state dict that does not fit": (["{kwonly_pth}", "--arch", TINY_ARCH, "--input", "x:1x3x32x32:float32"],
                                     "does not fit --arch"),
    "arch kwargs that do not fit": (["{resnet_pth}", "--arch", TINY_ARCH, "--arch-kwargs", '{"num_classes": 7}',
                                     "--input", "x:1x3x32x32:float32"], "shape mismatch"),
    "bad arch kwargs json": (["{resnet_pth}", "--arch", TINY_ARCH, "--arch-kwargs", "{oops"], "not valid JSON"),
    "arch not importable": (["{resnet_pth}", "--arch", "no_such_pkg.models:net", "--input", "x:1x3x32x32:float32"],
                            "cannot import"),
    "pickle that would run code": (["{evil}", "--arch", TINY_ARCH, "--input", "x:1x3x32x32:float32"],
                                   "pickled Python objects"),
    "whole module without trust": (["{resnet_whole}", "--input", "x:1x3x32x32:float32"], "--trust-pickle"),
    "input contradicts model": (["{resnet_ts}", "--input", "x:1x5x32x32:float32"], "x is 5, the model needs 3"),
    "input contradicts pt2": (["{resnet_pt2}", "--input", "x:1x3x32:float32"], "contradicts"),
    "torchscript without input": (["{resnet_ts}"], "pass --input"),
    "malformed input spec": (["{resnet_ts}", "--input", "x:1x3:float99"], "unknown dtype"),
    "unknown target": (["{resnet_pt2}", "--to", "onnx,coreml"], "unknown --to target"),
    "tensorrt without gpu": (["{resnet_pt2}", "--to", "tensorrt"], "tensorrt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(tiny, tmp_path, case):
    args, expected = CASES[case]
    args = [str(tiny[a[1:-1]]) if a.startswith("{") and a[1:-1] in tiny else a for a in args]
    out = tmp_path / "out"
    r = run_cli("export", *args, "-o", out)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("edgeopt: error:") and expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left behind


def test_malicious_pickle_never_runs(tiny, tmp_path):
    run_cli("export", tiny["evil"], "--arch", TINY_ARCH, "--input", "x:1x3x32x32:float32", "-o", tmp_path / "o")
    run_cli("export", tiny["evil"], "--input", "x:1x3x32x32:float32", "-o", tmp_path / "o")
    assert not tiny["marker"].exists()
