"""Layers point one way (docs/ARCHITECTURE.md): every ``import`` / ``from`` statement of every
module under edgeopt/ (at module level, inside functions, under TYPE_CHECKING) is read with
``ast``; a package may import only packages of lower layers, and no two modules may import each
other. Reading the source, not importing it, keeps this fast and sees lazy imports too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgeopt"

# Bottom to top. A package (or top-level module) imports only packages of LOWER layers; packages
# of one layer do not import each other. "edgeopt" is the root package's __init__ (__version__,
# and the lazy ``edgeopt.export(...)`` API that it takes from ``commands``).
LAYERS = (
    ("errors", "commands"),  # import nothing of edgeopt; commands names the command modules as
                             # strings and imports them with importlib only when called
    ("edgeopt", "spec", "atomic", "onnx_graph", "assets", "cpu"),  # leaf helpers
    ("runtime",),  # the device side; see SELF_CONTAINED
    ("manifest",),  # the export's manifest; hashes files as the device checks them (runtime.manifest)
    ("backends",),  # host runtimes (onnxruntime, OpenVINO, TensorRT): availability, sessions
    ("models",),  # load every model form into a LoadedModel
    ("data",),  # datasets, read against a model's inputs
    ("bench",),
    ("optimize",),  # INT8: times its candidates with bench
    ("export",),  # runs optimize's INT8 step
    ("train",),  # the training core of distill, prune and update: batches, objectives, held-out
                 # comparison (optimize's metrics), what they write
    ("distill", "prune", "update"),  # the three training commands: each trains with the core, none
                                     # imports another (distill exports a student to time it)
    ("bundle",),
    ("recipe", "serve", "fleet", "target", "federate"),
    ("demo", "doctor"),  # commands of their own; nothing below imports them
    ("cli",),
)

# packages that import no other part of edgeopt, whatever their layer, with the reason
SELF_CONTAINED = {"runtime": "edgeopt.runtime ships alone to devices (numpy and one runtime library)"}

# (importer's package, imported package) -> why the rule does not hold there; keep it empty
EXCEPTIONS: dict[tuple[str, str], str] = {}

# module pairs that import each other -> why; keep it empty
CYCLE_EXCEPTIONS: dict[frozenset, str] = {}


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root (a package's name is its __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path], package: str) -> list[tuple[str, str]]:
    """(file:line, module) for each edgeopt module that ``name`` imports anywhere in its source; a
    ``from X import y`` names X.y when that is a module, else X; relative imports are resolved."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            if target != package and not target.startswith(package + "."):
                continue
            while target not in known and "." in target:  # edgeopt.x.name -> the module holding name
                target = target.rsplit(".", 1)[0]
            if target != name:
                found.append((node.lineno, target))
    where = path.relative_to(known[package].parent.parent)
    return [(f"{where}:{line}", target) for line, target in sorted(found)]


def top(module: str) -> str:
    """The layer name of a module: its first segment under the root package ("edgeopt" for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def graph(root: Path, package: str) -> dict[str, list[tuple[str, str]]]:
    known = modules(root, package)
    return {name: imports(name, path, known, package) for name, path in known.items()}


def layer_violations(edges, layers, self_contained, exceptions, package: str = "edgeopt") -> list[str]:
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    problems = []
    for module, found in sorted(edges.items()):
        src = top(module)
        if src not in level:
            problems.append(f"{module}: package {src!r} is in no layer; add it to LAYERS (tests/test_layers.py) "
                            "and docs/ARCHITECTURE.md")
            continue
        for where, target in found:
            dst = top(target)
            if dst == src or (src, dst) in exceptions:
                continue
            where = f"{where} imports {target}"
            if src in self_contained:
                problems.append(f"{where}: {src} imports nothing else of {package} ({self_contained[src]})")
            elif dst not in level:
                problems.append(f"{where}: {dst!r} is in no layer")
            elif level[dst] >= level[src]:
                rel = "the same layer as" if level[dst] == level[src] else "a layer above"
                problems.append(f"{where}: {dst} is in {rel} {src} ({level[dst]} vs {level[src]})")
    return problems


def mutual_imports(edges, exceptions) -> list[str]:
    targets = {m: {t for _, t in found} for m, found in edges.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, ts in targets.items() for b in ts if a in targets.get(b, ())})
    return [f"{a} <-> {b}" for a, b in pairs if frozenset((a, b)) not in exceptions]


@pytest.fixture(scope="module")
def edges():
    return graph(ROOT, "edgeopt")


def test_packages_import_only_lower_layers(edges):
    problems = layer_violations(edges, LAYERS, SELF_CONTAINED, EXCEPTIONS)
    assert not problems, "imports against the layers (docs/ARCHITECTURE.md):\n  " + "\n  ".join(problems)


def test_no_two_modules_import_each_other(edges):
    pairs = mutual_imports(edges, CYCLE_EXCEPTIONS)
    assert not pairs, ("modules that import each other (move what both need into one of them or a third "
                       "module):\n  " + "\n  ".join(pairs))


def test_exceptions_are_still_needed(edges):
    """An exception whose import is gone is removed, so the rule tightens again."""
    used = {(top(m), top(t)) for m, found in edges.items() for _, t in found}
    assert not [e for e in EXCEPTIONS if e not in used], "stale EXCEPTIONS"
    pairs = {frozenset((m, t)) for m, found in edges.items() for _, t in found}
    assert not [c for c in CYCLE_EXCEPTIONS if c not in pairs], "stale CYCLE_EXCEPTIONS"


def test_the_walker_sees_lazy_relative_and_mutual_imports(tmp_path):
    """The checks above on a made-up package: an upward import inside a function, a relative one,
    a same-layer one, one out of a self-contained package, and a pair importing each other."""
    pkg = tmp_path / "pkg"
    for rel, text in {
        "__init__.py": "",
        "low/__init__.py": "from pkg.low import a\n",
        "low/a.py": "def f():\n    from pkg.high.b import g\n",
        "low/c.py": "from . import a\n",
        "high/__init__.py": "",
        "high/b.py": "from ..low.a import f\nfrom pkg import side\n",
        "side.py": "import pkg.low.c\n",
        "alone/__init__.py": "from pkg.low import c\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    edges = graph(pkg, "pkg")
    assert edges["pkg.low.a"] == [("pkg/low/a.py:2", "pkg.high.b")]
    assert edges["pkg.high.b"] == [("pkg/high/b.py:1", "pkg.low.a"), ("pkg/high/b.py:2", "pkg.side")]
    problems = layer_violations(edges, (("pkg", "alone"), ("low",), ("high", "side")), {"alone": "ships alone"}, {},
                                "pkg")
    assert [p.split(": ")[0] for p in problems] == [
        "pkg/alone/__init__.py:1 imports pkg.low.c",  # self-contained
        "pkg/high/b.py:2 imports pkg.side",  # same layer
        "pkg/low/a.py:2 imports pkg.high.b",  # a lazy import upward
    ]
    assert mutual_imports(edges, {}) == ["pkg.high.b <-> pkg.low.a"]
    unplaced = layer_violations(edges, (("pkg", "alone"), ("low",), ("high",)), {}, {}, "pkg")
    assert "pkg.side: package 'side' is in no layer" in [p.split("; ")[0] for p in unplaced]
    flat = layer_violations(edges, (("pkg",), ("low", "high", "side", "alone")), {}, {}, "pkg")
    assert "pkg/high/b.py:2 imports pkg.side: side is in the same layer as high (1 vs 1)" in flat
    assert layer_violations(edges, (("pkg",), ("low", "high", "side", "alone")), {}, {("high", "side"): "why"}, "pkg") \
        == [p for p in flat if "pkg/high/b.py:2" not in p]
