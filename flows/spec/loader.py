"""YAML loading with source positions, for compiler-style diagnostics.

Owns: the runbook YAML dialect and the source map.
- Only ``true``/``false`` (any case style YAML allows) are booleans: YAML 1.1 ``on/off/yes/no/y/n``
  stay strings. No sexagesimal numbers (``1:30`` is a string), no implicit timestamps (dates stay
  strings), decimal/hex integers only. Everything else is YAML's safe schema.
- Duplicate mapping keys are errors (RB002) reported with the second key's position; the first
  value wins so that later checks still see a runbook.
- ``load_yaml`` returns plain Python data plus a ``SourceMap``: JSON path -> 1-based (line, col)
  of the key (mapping entries) or of the value (sequence items, the root).

Must not touch: pydantic models, the action registry, Prefect, boto3, Slack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from flows.spec.diagnostics import Diagnostic

try:  # libyaml keeps node marks too, and is much faster
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["JsonPath", "Position", "SourceMap", "YamlDocument", "load_yaml"]

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_DROPPED = {_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class RunbookLoader(_BaseLoader):
    """Safe loader with YAML-1.2-like scalars (see the module docstring)."""


RunbookLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RunbookLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
RunbookLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
RunbookLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class SourceMap(dict[JsonPath, Position]):
    """JSON path -> (line, col), 1-based: the key's position for mapping entries, the value's
    position for sequence items and the root. ``value_positions`` maps paths to the value's position.
    """

    def __init__(self) -> None:
        super().__init__()
        self.value_positions: dict[JsonPath, Position] = {}

    def position(self, path: JsonPath, *, value: bool = False) -> Position:
        """Position of ``path``, or of its nearest ancestor present in the map."""
        table = self.value_positions if value else self
        for n in range(len(path), -1, -1):
            prefix = path[:n]
            if prefix in table:
                return table[prefix]
            if value and prefix in self:
                return self[prefix]
        return (1, 1)


@dataclass
class YamlDocument:
    data: Any
    source_map: SourceMap
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _pos(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, loader: RunbookLoader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.source_map = SourceMap()
        self.diagnostics: list[Diagnostic] = []
        self._active: set[int] = set()

    def error(self, node: yaml.Node, code: str, message: str) -> None:
        line, col = _pos(node)
        self.diagnostics.append(Diagnostic(self.filename, line, col, code, message))

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.source_map.value_positions[path] = _pos(node)
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self._active:
            self.error(node, "RB001", "recursive YAML alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ:
                    self.error(node, "RB001", f"unsupported YAML tag {node.tag!r}")
                out: list[Any] = []
                for i, child in enumerate(node.value):
                    self.source_map.setdefault((*path, i), _pos(child))
                    out.append(self.build(child, (*path, i)))
                return out
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self._active.discard(id(node))
        raise AssertionError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[Any, Any]:
        if node.tag != _MAP:
            self.error(node, "RB001", f"unsupported YAML tag {node.tag!r}")
        has_merge = any(k.tag == _MERGE for k, _ in node.value)
        if has_merge:
            # Merged keys may legitimately repeat explicit ones: explicit keys win, no error.
            self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        first: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int) or isinstance(key, bool):
                self.error(key_node, "RB003", f"mapping keys must be strings, not {key!r}")
                key = str(key)
            if key in first and not has_merge:
                line, col = _pos(first[key])
                self.error(key_node, "RB002", f"duplicate key {key!r} (first defined at {line}:{col})")
                continue
            first[key] = key_node
            self.source_map[(*path, key)] = _pos(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


def load_yaml(text: str, filename: str) -> YamlDocument:
    """Parse one YAML document. Syntax errors come back as RB001 diagnostics (data is None)."""
    loader = RunbookLoader(text)
    builder = _Builder(loader, filename)
    try:
        node = loader.get_single_node()
        if node is None:
            builder.source_map[()] = (1, 1)
            return YamlDocument(None, builder.source_map, builder.diagnostics)
        builder.source_map[()] = _pos(node)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        builder.diagnostics.append(Diagnostic(filename, line, col, "RB001", f"YAML syntax: {problem}"))
        return YamlDocument(None, builder.source_map, builder.diagnostics)
    except yaml.YAMLError as exc:
        builder.diagnostics.append(Diagnostic(filename, 1, 1, "RB001", f"YAML syntax: {exc}"))
        return YamlDocument(None, builder.source_map, builder.diagnostics)
    finally:
        loader.dispose()
    return YamlDocument(data, builder.source_map, builder.diagnostics)
