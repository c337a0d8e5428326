"""YAML loading with source positions, for compiler-style diagnostics.

Owns: the runbook YAML dialect and the source map.
- Only ``true``/``false`` (any case style YAML allows) are booleans: YAML 1.1 ``on/off/yes/no/y/n``
  stay strings. No sexagesimal numbers (``1:30`` is a string), no implicit timestamps (dates stay
  strings), decimal/hex integers only. Everything else is YAML's safe schema.
- Duplicate mapping keys are errors (RB002) reported with the second key's position; the first
  value wins so that later checks still see a runbook.
- ``load_yaml`` returns plain Python data plus a ``SourceMap``: JSON path -> 1-based (line, col)
  of the key (mapping entries) or of the value (sequence items, the root).
- Hostile input is refused before anything recurses or expands (RB004, see ``LIMITS``): file
  size, nesting depth and alias expansion are measured on the parser's event stream, which is
  produced iteratively, and only then is the document composed into nodes; the step count is
  checked on the composed node tree before any Python value is built. Characters YAML forbids
  (NUL, other C0 controls) and undecodable bytes are located at their line:col (RB001).

Must not touch: pydantic models, the action registry, Prefect, boto3, Slack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.engine.spec.diagnostics import Diagnostic

try:  # libyaml keeps node marks too, and is much faster
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["LIMITS", "JsonPath", "Limits", "Position", "SourceMap", "YamlDocument", "load_yaml", "read_runbook"]


@dataclass(frozen=True)
class Limits:
    """What a runbook file may contain (documented in docs/runbook-language.md, RB004)."""

    max_bytes: int = 1024 * 1024  #: file size (UTF-8 bytes)
    max_depth: int = 64  #: nested mappings/sequences, counted after alias expansion
    max_aliases: int = 1000  #: ``*alias`` uses in one file
    max_nodes: int = 200_000  #: YAML nodes after alias expansion (stops billion-laughs bombs)
    max_steps: int = 5000  #: entries of ``steps:``


LIMITS = Limits()

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


def _mark(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


# YAML 1.2 "printable" characters; anything else (NUL, C0 controls, DEL, lone surrogates) is refused.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _line_col(text: str, index: int) -> Position:
    line = text.count("\n", 0, index) + 1
    return (line, index - (text.rfind("\n", 0, index) + 1) + 1)


def read_runbook(
    path: Path, filename: str | None = None, limits: Limits = LIMITS
) -> tuple[str | None, Diagnostic | None]:
    """The text of a runbook file, or the located RB001/RB004 that stops reading it.

    The size is checked before the file is read; an undecodable byte is reported at its
    line:col (column counted in characters of the decoded prefix of its line).
    """
    shown = filename if filename is not None else str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            return None, Diagnostic(shown, 1, 1, "RB004", f"runbook is {size} bytes; the limit is {limits.max_bytes}")
        with path.open("rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        return None, Diagnostic(shown, 1, 1, "RB001", f"cannot read runbook: {exc.strerror or exc}")
    if len(data) > limits.max_bytes:
        return None, Diagnostic(shown, 1, 1, "RB004", f"runbook is over {limits.max_bytes} bytes")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        return None, Diagnostic(
            shown, line, col, "RB001",
            f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded ({exc.reason})",
            hint="save the runbook as UTF-8",
        )


class _LimitError(Exception):
    def __init__(self, position: Position, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


def _prescan(loader: RunbookLoader, limits: Limits) -> None:
    """Walk the event stream (no recursion) and raise ``_LimitError`` past a limit.

    Depth and node counts include what aliases expand to: an alias costs the node count and
    the height of its anchor, so nested aliases (billion laughs) are refused before expansion.
    """
    # Frame per open collection: [anchor, level, nodes before, deepest level reached inside].
    stack: list[list[Any]] = []
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height)
    nodes = 0
    aliases = 0

    def reach(level: int, mark: Any) -> None:
        if level > limits.max_depth:
            raise _LimitError(_mark(mark), f"YAML nested deeper than {limits.max_depth} levels")
        if stack and level > stack[-1][3]:
            stack[-1][3] = level

    while True:
        event = loader.get_event()
        if event is None or isinstance(event, yaml.StreamEndEvent):
            return
        level = len(stack)
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise _LimitError(_mark(event.start_mark), f"more than {limits.max_aliases} YAML aliases")
            count, height = sizes.get(event.anchor or "", (1, 0))
            nodes += count
            reach(level + height, event.start_mark)
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor:
                sizes[event.anchor] = (1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            nodes += 1
            reach(level + 1, event.start_mark)
            stack.append([event.anchor, level, nodes - 1, level + 1])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start_level, before, deepest = stack.pop()
            if anchor:
                sizes[anchor] = (nodes - before, deepest - start_level)
            if stack and deepest > stack[-1][3]:
                stack[-1][3] = deepest
        else:
            continue
        if nodes > limits.max_nodes:
            raise _LimitError(
                _mark(event.start_mark),
                f"YAML expands to more than {limits.max_nodes} nodes (aliases included)",
            )


def _check_steps(node: yaml.Node, limits: Limits) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        steps = isinstance(key, yaml.ScalarNode) and key.value == "steps" and isinstance(value, yaml.SequenceNode)
        if steps and len(value.value) > limits.max_steps:
            raise _LimitError(_pos(key), f"{len(value.value)} steps; the limit is {limits.max_steps}")


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

    def _key(self, key_node: yaml.Node) -> Any:
        key = self.loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int) or isinstance(key, bool):
            self.error(key_node, "RB003", f"mapping keys must be strings, not {key!r}")
            key = str(key)
        return key

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[Any, Any]:
        if node.tag != _MAP:
            self.error(node, "RB001", f"unsupported YAML tag {node.tag!r}")
        explicit = [(k, v) for k, v in node.value if k.tag != _MERGE]
        has_merge = len(explicit) != len(node.value)
        # Explicit keys are checked for duplicates among themselves (the first wins); keys that
        # come in through a merge ``<<`` may repeat explicit ones (explicit keys win, no error).
        first: dict[Any, yaml.Node] = {}
        dropped: set[int] = set()
        for key_node, _ in explicit:
            key = self._key(key_node)
            if key in first:
                line, col = _pos(first[key])
                self.error(key_node, "RB002", f"duplicate key {key!r} (first defined at {line}:{col})")
                dropped.add(id(key_node))
                continue
            first[key] = key_node
        if has_merge:
            node.value = [(k, v) for k, v in node.value if id(k) not in dropped]
            self.loader.flatten_mapping(node)
            entries = node.value
        else:
            entries = [(k, v) for k, v in explicit if id(k) not in dropped]
        out: dict[Any, Any] = {}
        for key_node, value_node in entries:
            key = self.loader.construct_object(key_node, deep=True)  # cached; reported above
            key = key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)
            self.source_map[(*path, key)] = _pos(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


_INDENT_HINT = (
    "check the indentation: a key indented deeper than its siblings, or a value containing ': ' "
    "that should be quoted"
)


def _syntax(exc: yaml.MarkedYAMLError, filename: str, text: str) -> Diagnostic:
    problem = exc.problem or "invalid YAML"
    mark = exc.problem_mark or exc.context_mark
    line, col = _mark(mark) if mark else (1, 1)
    hint: str | None = None
    unterminated = "end of stream" in problem or (
        mark is not None and exc.context_mark is not None and mark.index >= len(text.rstrip())
    )
    if unterminated and exc.context_mark is not None:
        # An unclosed quote or bracket: the parser only notices at the end of the file, but
        # the mistake is where the construct opened.
        end = f"{line}:{col}"
        line, col = _mark(exc.context_mark)
        what = (exc.context or "construct").removeprefix("while scanning ").removeprefix("while parsing ")
        what = what.removeprefix("a ").removeprefix("an ")
        return Diagnostic(
            filename, line, col, "RB001", f"YAML syntax: unclosed {what} starting here ({problem} at {end})",
            hint="close the quote or bracket that opens here",
        )
    if exc.context and exc.context not in problem:
        opened = exc.context_mark
        at = f" started at {opened.line + 1}:{opened.column + 1}" if opened is not None and opened is not mark else ""
        problem = f"{problem} ({exc.context}{at})"
    if "mapping values are not allowed" in problem or "expected key" in problem or "block end" in problem:
        problem = f"{problem}: bad indentation?"
        hint = _INDENT_HINT
    return Diagnostic(filename, line, col, "RB001", f"YAML syntax: {problem}", hint=hint)


def load_yaml(text: str, filename: str, limits: Limits = LIMITS) -> YamlDocument:
    """Parse one YAML document. Syntax errors and limits come back as diagnostics (data is None)."""
    source_map = SourceMap()
    source_map[()] = (1, 1)

    def fail(line: int, col: int, code: str, message: str, hint: str | None = None) -> YamlDocument:
        return YamlDocument(None, source_map, [Diagnostic(filename, line, col, code, message, hint=hint)])

    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_bytes:
        return fail(1, 1, "RB004", f"runbook is {size} bytes; the limit is {limits.max_bytes}")
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line, col = _line_col(text, bad.start())
        return fail(line, col, "RB001", f"character U+{ord(bad.group()):04X} is not allowed in YAML",
                    hint="remove control characters (NUL, escape, ...) from the file")
    try:
        scanner = RunbookLoader(text)
        try:
            _prescan(scanner, limits)
        finally:
            scanner.dispose()
    except _LimitError as exc:
        return fail(*exc.position, "RB004", exc.message)
    except yaml.MarkedYAMLError as exc:
        return YamlDocument(None, source_map, [_syntax(exc, filename, text)])
    except yaml.YAMLError as exc:
        return fail(1, 1, "RB001", f"YAML syntax: {exc}")
    loader = RunbookLoader(text)
    builder = _Builder(loader, filename)
    builder.source_map = source_map
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, source_map, builder.diagnostics)
        _check_steps(node, limits)
        source_map[()] = _pos(node)
        data = builder.build(node, ())
    except _LimitError as exc:
        return fail(*exc.position, "RB004", exc.message)
    except yaml.MarkedYAMLError as exc:
        builder.diagnostics.append(_syntax(exc, filename, text))
        return YamlDocument(None, source_map, builder.diagnostics)
    except yaml.YAMLError as exc:
        builder.diagnostics.append(Diagnostic(filename, 1, 1, "RB001", f"YAML syntax: {exc}"))
        return YamlDocument(None, source_map, builder.diagnostics)
    finally:
        loader.dispose()
    return YamlDocument(data, source_map, sorted(builder.diagnostics, key=Diagnostic.sort_key))
