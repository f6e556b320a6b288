import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgeopt.cli import COMMANDS, main

CONTRACT = ["doctor", "export", "distill", "prune", "update", "bench", "keygen", "package", "verify", "install",
            "run", "demo", "predict", "rollback", "serve", "repo", "publish", "agent", "fleet", "federate",
            "verify-target"]


def test_help_lists_every_contract_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in CONTRACT:
        assert f"  {name} " in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_importing_the_cli_loads_no_heavy_library():
    code = ("import sys, edgeopt.cli, edgeopt.cli.export, edgeopt.cli.doctor, edgeopt.cli.demo, edgeopt.cli.bench, "
            "edgeopt.cli.package, edgeopt.cli.verify, edgeopt.cli.install, edgeopt.cli.rollback, "
            "edgeopt.cli.predict, edgeopt.cli.keygen; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'onnx', 'transformers', 'nncf') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bench_child_module_loads_nothing_before_its_runtime():
    """The cold-start child must pay only for numpy and the runtime it measures."""
    code = ("import sys, edgeopt.bench.child; heavy = [m for m in ('numpy', 'torch', 'onnxruntime', 'openvino', "
            "'click', 'rich', 'yaml') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_doctor_json_is_one_document():
    result = CliRunner().invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    names = {r["name"]: r for r in data["runtimes"]}
    assert names["onnxruntime"]["available"] is True
    assert names["tensorrt"]["available"] is False or data["gpus"]
    if not names["tensorrt"]["available"]:
        assert names["tensorrt"]["reason"] and "pip install" in names["tensorrt"]["hint"]
    assert data["cpu"]["logical_cores"] >= 1


@pytest.mark.parametrize("args, expected", [
    (["export", "m.onnx", "--eval-batch", "0"], "Invalid value for '--eval-batch'"),
    (["export", "m.onnx", "--nope"], "No such option '--nope'"),
    (["export"], "Missing argument 'MODEL'"),
    (["exprt"], "No such command 'exprt'"),
])
def test_bad_flags_and_values_get_one_line_and_exit_2(args, expected):
    """Click's own errors leave like edgeopt's: one line with where to look, exit 2, no usage block."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: ") and expected in lines[0], result.output
    assert "--help'" in lines[0]


def test_json_stdout_stays_one_document_when_user_code_prints(tmp_path):
    """A model's own module printing on import (DeepCTR-Torch prints a version notice) goes to stderr
    under --json: stdout is the one document a script parses."""
    import torch

    (tmp_path / "noisy.py").write_text('print("a notice from the library, on stdout")\nimport torch\n\n\n'
                                       "def lin():\n    return torch.nn.Linear(4, 2)\n")
    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "lin.pt")
    r = subprocess.run([sys.executable, "-m", "edgeopt.cli", "export", str(tmp_path / "lin.pt"), "--arch",
                        f"{tmp_path / 'noisy.py'}:lin", "--input", "x:batchx4:float32", "--to", "onnx", "-o",
                        str(tmp_path / "out"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["artifacts"] and "a notice from the library" in r.stderr
