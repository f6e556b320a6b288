"""Regenerate the tiny test models: python tests/make_models.py OUT_DIR.

Writes a residual CNN as state dict (.pth, .safetensors), TorchScript, torch.export .pt2 and a
whole pickled module, a keyword-only model, and the bad inputs the loader must refuse.
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import kwonly, resnet_tiny  # noqa: E402

MARKER_ENV = "EDGEOPT_TEST_MARKER"


class Evil:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make(out: Path) -> dict:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = resnet_tiny().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    paths = {"resnet_pth": out / "resnet.pth", "resnet_st": out / "resnet.safetensors",
             "resnet_ts": out / "resnet.ts", "resnet_pt2": out / "resnet.pt2",
             "resnet_whole": out / "resnet_whole.pt", "kwonly_pth": out / "kwonly.pth",
             "evil": out / "evil.pt", "truncated": out / "truncated.pth", "garbage_onnx": out / "garbage.onnx",
             "wrapped_pth": out / "resnet_ckpt.pth", "unknown": out / "resnet.h5"}
    torch.save(net.state_dict(), paths["resnet_pth"])
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               paths["wrapped_pth"])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(paths["resnet_st"]))
    torch.jit.save(torch.jit.trace(net, x), str(paths["resnet_ts"]))
    ep = torch.export.export(net, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}})
    torch.export.save(ep, str(paths["resnet_pt2"]))
    torch.save(net, paths["resnet_whole"])
    torch.save(kwonly().state_dict(), paths["kwonly_pth"])
    marker = out / "PWNED"
    torch.save({"weights": Evil(str(marker))}, paths["evil"])
    data = paths["resnet_pth"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["garbage_onnx"].write_bytes(os.urandom(4096))
    paths["unknown"].write_bytes(b"\x89HDF\r\n\x1a\n")
    paths["marker"] = marker
    return paths


if __name__ == "__main__":
    for name, path in make(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-models")).items():
        print(f"{name}: {path}")
