"""Reading a recipe file (YAML, or JSON, which YAML reads too) into plain data plus the line of
every key, so a validation error can name the line the user has to fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.errors import UsageError


@dataclass
class Source:
    path: Path
    data: dict
    lines: dict[tuple, int] = field(default_factory=dict)  # key path -> 1-based line

    def line(self, *keys) -> str:
        """' (line N)' for the deepest known prefix of ``keys``, '' when unknown."""
        for n in range(len(keys), 0, -1):
            if keys[:n] in self.lines:
                return f" (line {self.lines[keys[:n]]})"
        return ""


def _walk(loader, node, path: tuple, lines: dict):
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise UsageError(f"line {key_node.start_mark.line + 1}: a key must be a plain name, got {key!r}")
            if key in out:
                raise UsageError(f"line {key_node.start_mark.line + 1}: {key!r} is given twice; keep one")
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _walk(loader, value_node, path + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, path + (i,), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def read(path: str | Path) -> Source:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such recipe: {path}; give a YAML or JSON recipe file (see `edgeopt run --help`)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read recipe {path}: {e}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[tuple, int] = {}
        data = _walk(loader, node, (), lines) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise UsageError(f"{path}: {where}{e.problem or e}; fix the YAML syntax") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML or JSON ({e})") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe is a mapping with model, data, steps and gates (see `edgeopt run --help`)")
    return Source(p, data, lines)
