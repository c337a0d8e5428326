"""flows.engine.spec: every mistake reported at once, at the right line:col, with the right code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import FIXTURES, GOLDEN

from flows.engine.spec import format_all, validate_text
from integrations.base import ActionRegistry

REL = Path("tests/flows/engine/spec/fixtures")


def _diagnose(name: str, registry: ActionRegistry) -> list:
    path = FIXTURES / name
    return validate_text(path.read_text(), str(REL / name), registry, base_dir=path.parent)


def _codes(text: str, registry: ActionRegistry) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.code) for d in validate_text(text, "x.yaml", registry)]


def test_five_mistakes_match_the_golden_file(registry: ActionRegistry) -> None:
    diagnostics = _diagnose("five_mistakes.yaml", registry)
    actual = format_all(diagnostics)
    golden = GOLDEN / "five_mistakes.txt"
    if os.environ.get("STANCH_UPDATE_GOLDEN"):
        golden.write_text(actual)
    assert actual == golden.read_text(), "regenerate with STANCH_UPDATE_GOLDEN=1 if intended"
    assert [(d.line, d.col, d.code) for d in diagnostics] == [
        (16, 9, "RB101"),  # duplicate step id
        (21, 20, "RB103"),  # revoke <-> rotate
        (25, 7, "RB105"),  # 'usr' for 'user' (one diagnostic, not also "missing user")
        (27, 21, "RB102"),  # needs 'scopee'
        (28, 13, "RB104"),  # aws.acm.rotate_certficate
    ]


def test_a_good_runbook_has_no_diagnostics(registry: ActionRegistry) -> None:
    assert _diagnose("compromised_dependency.yaml", registry) == []


def test_template_mistakes(registry: ActionRegistry) -> None:
    got = [(d.line, d.col, d.code) for d in _diagnose("templates_bad.yaml", registry)]
    assert got == [
        (8, 22, "RB106"),  # inputs.advisry
        (14, 17, "RB110"),  # unknown compensation action
        (18, 13, "RB111"),  # missing report template
        (20, 16, "RB109"),  # item without for_each
        (21, 13, "RB107"),  # steps.revoke-keys is a subtraction
        (21, 13, "RB115"),  # output.afected
        (24, 9, "RB107"),  # scope is not upstream of tell
        (26, 16, "RB112"),  # incident.channel
        (27, 13, "RB108"),  # syntax
        (31, 16, "RB112"),  # unknown variable
        (31, 42, "RB105"),  # subject: 42 is not a string
        (31, 52, "RB107"),  # a step reading its own output
    ]


def test_unknown_input_message(registry: ActionRegistry) -> None:
    [diag] = _diagnose("templates_bad.yaml", registry)[:1]
    assert diag.format() == (
        "tests/flows/engine/spec/fixtures/templates_bad.yaml:8:22: error[RB106]: "
        "unknown input 'advisry' (did you mean 'advisory'?)"
    )


HEAD = "name: t\ntitle: T\ninputs: {advisory: {type: string}}\nsteps:\n"


def test_not_upstream_is_transitive(registry: ActionRegistry) -> None:
    text = HEAD + (
        "  - {id: a, action: inventory.match_advisory, with: {advisory: x}}\n"
        "  - {id: b, needs: [a], action: slack.post_message, with: {channel: c, text: t}}\n"
        "  - id: c\n"
        "    needs: [b]\n"
        "    action: slack.post_message\n"
        "    with: {channel: c, text: '{{ steps.a.output.packages }}'}\n"
    )
    assert _codes(text, registry) == []
    assert _codes(text.replace("needs: [b]", "needs: []"), registry) == [(10, 30, "RB107")]


def test_templated_params_skip_type_checks_but_not_keys(registry: ActionRegistry) -> None:
    text = HEAD + (
        "  - id: a\n"
        "    action: aws.ses.send_email\n"
        "    with:\n"
        "      to: '{{ inputs.advisory }}'\n"  # templated: not type-checked
        "      subject: [not, a, string]\n"  # literal: type-checked
        "      bodi: '{{ inputs.advisory }}'\n"  # unknown even though templated
    )
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [(9, 16, "RB105"), (10, 7, "RB105")]
    assert "'bodi'" in diags[1].message and "did you mean 'body'" in diags[1].message
    assert "missing" not in " ".join(d.message for d in diags)


def test_missing_required_param_points_at_with_or_step(registry: ActionRegistry) -> None:
    text = HEAD + "  - id: a\n    action: aws.iam.deactivate_access_keys\n    with: {account: '1'}\n"
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [(7, 5, "RB105")]
    assert "missing required parameter 'user'" in diags[0].message
    text = HEAD + "  - id: a\n    action: aws.iam.deactivate_access_keys\n"
    assert _codes(text, registry) == [(5, 5, "RB105"), (5, 5, "RB105")]


def test_self_need_is_a_cycle(registry: ActionRegistry) -> None:
    text = HEAD + "  - {id: a, needs: [a], action: slack.post_message, with: {channel: c, text: t}}\n"
    diags = validate_text(text, "x.yaml", registry)
    assert [d.code for d in diags] == ["RB103"]
    assert "a -> a" in diags[0].message


def test_longer_cycle_is_named(registry: ActionRegistry) -> None:
    step = "  - {{id: {0}, needs: [{1}], action: slack.post_message, with: {{channel: c, text: t}}}}\n"
    text = HEAD + step.format("a", "c") + step.format("b", "a") + step.format("c", "b")
    [diag] = validate_text(text, "x.yaml", registry)
    assert diag.code == "RB103"
    assert "a -> c -> b -> a" in diag.message


def test_item_only_inside_for_each(registry: ActionRegistry) -> None:
    text = HEAD + (
        "  - id: a\n"
        "    for_each: '{{ [item] }}'\n"
        "    action: slack.post_message\n"
        "    with: {channel: '{{ item }}', text: t}\n"
    )
    assert _codes(text, registry) == [(6, 15, "RB109")]


def test_expression_fields_must_be_templates(registry: ActionRegistry) -> None:
    text = (
        HEAD + "  - {id: a, if: inputs.advisory, action: slack.post_message, with: {channel: c, text: t}}\n"
    )
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.code, d.hint) for d in diags] == [("RB116", 'write if: "{{ inputs.advisory }}"')]


def test_approval_step_options(registry: ActionRegistry) -> None:
    text = HEAD + (
        "  - id: gate\n"
        "    approval: {approvers: ['@leads'], message: '{{ inputs.nope }}'}\n"
        "    retries: 2\n"
        "    concurrency: 3\n"
    )
    assert _codes(text, registry) == [(6, 48, "RB106"), (7, 5, "RB114"), (8, 5, "RB114")]


def test_compensation_checks(registry: ActionRegistry) -> None:
    text = HEAD + (
        "  - id: a\n"
        "    action: aws.iam.deactivate_access_keys\n"
        "    with: {account: '1', user: u}\n"
        "    compensate:\n"
        "      action: aws.iam.reactivate_access_keys\n"
        "      with: {account: '{{ params.account }}', user: '{{ output.deactivated[0] }}', extra: 1}\n"
        "  - id: b\n"
        "    action: aws.s3.publish_release\n"
        "    with: {bucket: b, key: k, version: v}\n"
        "    compensate: aws.iam.reactivate_access_keys\n"
    )
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [
        (10, 84, "RB105"),  # extra: not a parameter of the compensation
        (14, 17, "RB105"),  # the step's with: cannot feed reactivate (account, user missing ...)
        (14, 17, "RB105"),
        (14, 17, "RB105"),  # ... and bucket/key/version are not accepted
        (14, 17, "RB105"),
        (14, 17, "RB105"),
    ]


def test_input_declarations(registry: ActionRegistry) -> None:
    text = (
        "name: t\ntitle: T\ninputs:\n"
        "  bad-name: {type: string}\n"
        "  n: {type: integer, default: 'x'}\n"
        "  c: {type: string, default: d, choices: [a, b]}\n"
        "steps:\n  - {id: a, action: slack.post_message, with: {channel: c, text: t}}\n"
    )
    assert _codes(text, registry) == [(4, 3, "RB113"), (5, 31, "RB113"), (6, 21, "RB113")]


def test_report_template_syntax_is_checked(tmp_path: Path, registry: ActionRegistry) -> None:
    (tmp_path / "r.j2").write_text("ok\n{% if x %}\n")
    text = (
        "name: t\ntitle: T\nreport: r.j2\nsteps:\n"
        "  - {id: a, action: slack.post_message, with: {channel: c, text: t}}\n"
    )
    [diag] = validate_text(text, "x.yaml", registry, base_dir=tmp_path)
    assert (diag.file, diag.code) == ("r.j2", "RB108")


@pytest.mark.parametrize("name", ["steps", "steps[x]"])
def test_dynamic_step_references_are_refused(name: str, registry: ActionRegistry) -> None:
    text = HEAD + "  - {id: a, action: slack.post_message, with: {channel: c, text: '{{ NAME }}'}}\n"
    text = text.replace("NAME", name)
    assert "RB107" in [d.code for d in validate_text(text, "x.yaml", registry)]


WHEN = HEAD + (
    "  - {id: a, action: inventory.match_advisory, with: {advisory: x}}\n"       # line 5
    "  - {id: b, needs: [a], action: slack.post_message, with: {channel: c, text: t}}\n"
    "  - id: tell\n"                                                               # line 7
    "    when: on_failure\n"
    "    action: slack.post_message\n"
    "    with: {channel: c, text: '{{ run.outcome }}: {{ run.failed_steps | join(\", \") }} {{ steps.a.status }}'}\n"
    "  - id: after\n"                                                              # line 11
    "    when: always\n"
    "    needs: [tell]\n"
    "    action: slack.post_message\n"
    "    with: {channel: c, text: '{{ steps.tell.status }} {{ steps.b.status }}'}\n"
)


def test_when_steps_see_every_ordinary_step_and_the_run(registry: ActionRegistry) -> None:
    assert _codes(WHEN, registry) == []


def test_when_step_misuse_is_located(registry: ActionRegistry) -> None:
    # a when-step needing an ordinary step, an ordinary step needing a when-step
    text = WHEN.replace("needs: [tell]", "needs: [tell, a]") + (
        "  - {id: late, needs: [after], action: slack.post_message, with: {channel: c, text: t}}\n")
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [(13, 19, "RB122"), (16, 24, "RB122")]
    assert "runs after every other step: it cannot need 'a'" in diags[0].message
    assert "'late' would never be ready" in diags[1].message
    # run.* outside a when-step; an unknown run field; when on an approval
    text = HEAD + (
        "  - {id: a, action: slack.post_message, with: {channel: c, text: '{{ run.outcome }}'}}\n"
        "  - {id: b, when: always, action: slack.post_message, with: {channel: c, text: '{{ run.outcom }}'}}\n"
        "  - {id: g, when: on_failure, approval: {approvers: [U123]}}\n"
    )
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [(5, 66, "RB112"), (6, 80, "RB112"), (7, 19, "RB114")]
    assert "only defined in a 'when: always' or 'when: on_failure' step" in diags[0].message
    assert "'run' has no attribute 'outcom'" in diags[1].message


def test_on_deny_is_skip_or_fail(registry: ActionRegistry) -> None:
    gate = HEAD + "  - {id: g, approval: {approvers: [U123], on_deny: %s}}\n"
    assert _codes(gate % "skip", registry) == []
    assert _codes(gate % "fail", registry) == []
    assert [c for *_, c in _codes(gate % "ignore", registry)] == ["RB003"]
