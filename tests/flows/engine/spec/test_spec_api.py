"""flows.engine.spec public API: load_runbook / validate_file / validate_text and RB003 shape errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES

from flows.engine.spec import (
    CODES,
    Diagnostic,
    LoadedRunbook,
    RunbookError,
    load_runbook,
    validate_file,
    validate_text,
)
from integrations.base import ActionRegistry


def test_load_runbook_returns_the_model_and_source_map(registry: ActionRegistry) -> None:
    loaded = load_runbook(FIXTURES / "compromised_dependency.yaml", registry)
    assert isinstance(loaded, LoadedRunbook)
    rb = loaded.runbook
    assert rb.name == "compromised-dependency"
    assert [s.id for s in rb.steps][:3] == ["scope", "announce", "revoke-ci-keys"]
    revoke = rb.steps[2]
    assert revoke.timeout == 120.0 and revoke.concurrency == 16
    assert revoke.with_ == {"account": "{{ item.account }}", "user": "{{ item.ci_user }}"}
    assert rb.steps[-1].if_ == "{{ inputs.notify_customers }}"
    assert loaded.source_map[("steps", 2, "id")] == (25, 5)
    assert loaded.template_path(rb.report or "") == FIXTURES / "templates/step.md.j2"
    assert loaded.text.startswith("name: compromised-dependency")
    assert loaded.warnings == ()


def test_load_runbook_raises_with_every_diagnostic(registry: ActionRegistry) -> None:
    with pytest.raises(RunbookError) as info:
        load_runbook(FIXTURES / "five_mistakes.yaml", registry)
    err = info.value
    assert len(err.diagnostics) == 5
    assert all(isinstance(d, Diagnostic) for d in err.diagnostics)
    assert "5 errors" in str(err)
    assert "error[RB104]" in str(err)


def test_validate_file_and_missing_file(tmp_path: Path, registry: ActionRegistry) -> None:
    assert validate_file(FIXTURES / "compromised_dependency.yaml", registry) == []
    [diag] = validate_file(tmp_path / "nope.yaml", registry)
    assert diag.code == "RB001"
    with pytest.raises(RunbookError):
        load_runbook(tmp_path / "nope.yaml", registry)


def test_schema_errors_have_positions_and_semantic_checks_still_run(registry: ActionRegistry) -> None:
    path = FIXTURES / "schema_errors.yaml"
    diags = validate_text(path.read_text(), "s.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [
        (1, 7, "RB003"),  # name pattern
        (9, 5, "RB003"),  # acton
        (10, 14, "RB003"),  # timeout: soon
        (11, 9, "RB003"),  # if: [1]
        (14, 27, "RB003"),  # approvers: []
    ]
    assert "did you mean 'action'" in diags[1].message
    assert "invalid duration 'soon'" in diags[2].message
    # A semantic error in a well-formed step is still found next to shape errors:
    text = path.read_text().replace("text: hi", "txt: hi")
    assert "RB105" in [d.code for d in validate_text(text, "s.yaml", registry)]


def test_aliases_in_error_positions(registry: ActionRegistry) -> None:
    text = "name: t\ntitle: T\nsteps:\n  - id: a\n    action: slack.post_message\n    with: [1]\n"
    [diag] = validate_text(text, "x.yaml", registry)
    assert (diag.line, diag.col, diag.code) == (6, 11, "RB003")
    assert diag.message.startswith("steps[0].with:")


def test_not_a_mapping(registry: ActionRegistry) -> None:
    assert [d.code for d in validate_text("- a\n", "x.yaml", registry)] == ["RB003"]
    assert [d.code for d in validate_text("", "x.yaml", registry)] == ["RB003"]


def test_one_kind_of_step(registry: ActionRegistry) -> None:
    text = "name: t\ntitle: T\nsteps:\n  - id: a\n"
    [diag] = validate_text(text, "x.yaml", registry)
    assert (diag.line, diag.col, diag.code) == (4, 5, "RB003")
    assert "exactly one of 'action' or 'approval'" in diag.message


def test_warnings_do_not_fail_a_load(tmp_path: Path, registry: ActionRegistry) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "name: w\ntitle: W\nsteps:\n"
        "  - {id: a, concurrency: 2, action: slack.post_message, with: {channel: c, text: t}}\n"
    )
    loaded = load_runbook(path, registry)
    assert [(d.code, d.severity) for d in loaded.warnings] == [("RB114", "warning")]


def test_every_code_is_documented() -> None:
    doc = (Path(__file__).parents[4] / "docs" / "runbook-language.md").read_text()
    for code, title in CODES.items():
        assert f"| {code} |" in doc, f"{code} ({title}) missing from docs/runbook-language.md"


def test_the_documented_example_is_valid(registry: ActionRegistry) -> None:
    doc = (Path(__file__).parents[4] / "docs" / "runbook-language.md").read_text()
    example = doc.split("## Annotated example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert validate_text(example, "example.yaml", registry, base_dir=FIXTURES) == []
