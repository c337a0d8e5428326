"""The runbook spec: YAML text -> validated ``Runbook`` + source map, or every problem at once.

Owns the public API the engine and the entry points use:
``load_runbook``, ``validate_file``, ``validate_text``, ``LoadedRunbook``, ``Diagnostic``.
Pipeline: ``loader`` (YAML, positions, RB001/RB002) -> ``shape`` (pydantic, RB003) ->
``checks`` (graph, actions, params, templates, files: RB1xx).
Must not touch: Prefect, boto3, Slack; it never runs an action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flows.engine.spec.checks import check_runbook
from flows.engine.spec.diagnostics import CODES, Diagnostic, cap_diagnostics, format_all, has_errors, sort_diagnostics
from flows.engine.spec.loader import LIMITS, Limits, SourceMap, load_yaml, read_runbook
from flows.engine.spec.models import Approval, Compensation, InputSpec, Runbook, Step
from flows.engine.spec.shape import validate_shape
from integrations.base import ActionRegistry, default_registry
from integrations.errors import RunbookError

__all__ = [
    "CODES",
    "LIMITS",
    "Approval",
    "Compensation",
    "Diagnostic",
    "InputSpec",
    "Limits",
    "LoadedRunbook",
    "Runbook",
    "RunbookError",
    "SourceMap",
    "Step",
    "format_all",
    "has_errors",
    "load_runbook",
    "load_text",
    "validate_file",
    "validate_text",
]


@dataclass(frozen=True)
class LoadedRunbook:
    """A runbook that passed every check. ``warnings`` holds non-fatal diagnostics."""

    runbook: Runbook
    path: Path
    source_map: SourceMap
    text: str
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def template_path(self, relative: str) -> Path:
        """A ``report:``/``postmortem:`` file, resolved against the runbook's directory."""
        return self.base_dir / relative


def _analyse(
    text: str, filename: str, registry: ActionRegistry, base_dir: Path | None
) -> tuple[Runbook | None, SourceMap, list[Diagnostic]]:
    doc = load_yaml(text, filename)
    diagnostics = list(doc.diagnostics)
    if doc.data is None and diagnostics:
        return None, doc.source_map, cap_diagnostics(sort_diagnostics(diagnostics))
    shaped = validate_shape(doc.data, doc.source_map, filename)
    diagnostics.extend(shaped.diagnostics)
    if shaped.runbook is not None:
        diagnostics.extend(
            check_runbook(
                shaped.runbook,
                doc.source_map,
                registry,
                file=filename,
                base_dir=base_dir,
                step_indices=shaped.step_indices,
                unvalidated_ids=shaped.unvalidated_ids,
            )
        )
    runbook = shaped.runbook if shaped.complete else None
    return runbook, doc.source_map, cap_diagnostics(sort_diagnostics(diagnostics))


def validate_text(
    text: str, filename: str, registry: ActionRegistry | None = None, *, base_dir: Path | None = None
) -> list[Diagnostic]:
    """Every diagnostic (errors and warnings, sorted) for runbook ``text``.

    ``filename`` is only used in diagnostics; template files are looked up in ``base_dir``
    (default: ``filename``'s directory when that exists, else template files are not checked).
    """
    if base_dir is None and Path(filename).parent.is_dir() and Path(filename).is_file():
        base_dir = Path(filename).parent
    return _analyse(text, filename, registry or default_registry(), base_dir)[2]


def validate_file(path: str | Path, registry: ActionRegistry | None = None) -> list[Diagnostic]:
    """Every diagnostic for the runbook file at ``path`` (unreadable file: one RB001)."""
    path = Path(path)
    text, problem = read_runbook(path)
    if text is None:
        return [problem] if problem is not None else []
    return _analyse(text, str(path), registry or default_registry(), path.parent)[2]


def load_text(
    text: str, filename: str, registry: ActionRegistry | None = None, *, base_dir: Path | None = None
) -> LoadedRunbook:
    """Like ``load_runbook`` for text already in memory (``path`` becomes ``base_dir/filename``)."""
    runbook, source_map, diagnostics = _analyse(text, filename, registry or default_registry(), base_dir)
    errors = [d for d in diagnostics if d.is_error]
    if runbook is None or errors:
        n = len(errors)
        raise RunbookError(
            f"{filename}: {n} error{'s' if n != 1 else ''}\n{format_all(errors)}".rstrip("\n"), diagnostics
        )
    path = (base_dir / Path(filename).name) if base_dir is not None else Path(filename)
    return LoadedRunbook(runbook, path, source_map, text, tuple(d for d in diagnostics if not d.is_error))


def load_runbook(path: str | Path, registry: ActionRegistry | None = None) -> LoadedRunbook:
    """Load and check a runbook file; raise ``RunbookError`` (with ``.diagnostics``) on any error."""
    path = Path(path)
    text, problem = read_runbook(path)
    if text is None:
        diags = [problem] if problem is not None else []
        raise RunbookError(format_all(diags).rstrip("\n") or f"{path}: cannot read runbook", diags)
    loaded = load_text(text, str(path), registry, base_dir=path.parent)
    return LoadedRunbook(loaded.runbook, path, loaded.source_map, text, loaded.warnings)
