"""flows.engine.spec against hostile and careless input: limits, linear validation, containment, and
checks for runbooks that used to be accepted but fail (or misbehave) at run time.

The file-by-file corpus with goldens is tests/hostile/runbooks (tests/hostile/test_hostile_runbooks.py);
these tests pin the mechanisms (limits, budgets, path rules) with small, generated inputs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.engine.compiler import compile_plan
from flows.engine.reports import ReportError, render_template
from flows.engine.spec import Limits, Runbook, load_text, validate_file, validate_text
from flows.engine.spec.checks import upstream
from flows.engine.spec.diagnostics import MAX_DIAGNOSTICS
from flows.engine.spec.loader import load_yaml
from flows.engine.spec.templates import TEMPLATE_DIRS_ENV, TemplatePathError, resolve_template
from integrations.base import ActionRegistry
from integrations.errors import RunbookError

HEAD = "name: hostile\ntitle: Hostile\n"
STEP = "  - id: {id}\n    action: slack.post_message\n    with: {{channel: c, text: t}}\n"


def _codes(text: str, registry: ActionRegistry, **kw: object) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.code) for d in validate_text(text, "x.yaml", registry, **kw)]  # type: ignore[arg-type]


def _chain(n: int, *, reverse: bool = False) -> str:
    lines = [HEAD.rstrip("\n"), "steps:"]
    for i in range(n):
        dep = i + 1 if reverse else i - 1
        lines += [f"  - id: s{i}", "    action: slack.post_message"]
        if 0 <= dep < n:
            lines += [f"    needs: [s{dep}]", f"    with: {{channel: c, text: '{{{{ steps.s{dep}.status }}}}'}}"]
        else:
            lines.append("    with: {channel: c, text: t}")
    return "\n".join(lines) + "\n"


# -- YAML limits (RB004) -------------------------------------------------------------------------


def test_deep_nesting_that_used_to_segfault_is_refused_in_a_child_process() -> None:
    code = (
        "from flows.engine.spec.loader import load_yaml\n"
        "for text in ('[' * 100000 + ']' * 100000, 'a: ' + '{a: ' * 20000 + '1' + '}' * 20000, '- ' * 30000 + 'x'):\n"
        "    d = load_yaml(text, 'x.yaml').diagnostics\n"
        "    print(d[0].code, d[0].line, d[0].col)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:3] == ["RB004 1 65", "RB004 1 256", "RB004 1 129"]


def test_depth_limit_counts_what_aliases_expand_to() -> None:
    shallow = "a: &a [[[x]]]\nb: [[[*a]]]\n"  # the root mapping + 3 + 3 levels after expansion
    assert load_yaml(shallow, "x", Limits(max_depth=7)).diagnostics == []
    diags = load_yaml(shallow, "x", Limits(max_depth=6)).diagnostics
    assert [(d.code, d.line, d.col) for d in diags] == [("RB004", 2, 7)]


def test_billion_laughs_is_refused_before_expansion() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    started = time.process_time()
    diags = load_yaml(text, "x").diagnostics
    assert time.process_time() - started < 1
    assert [d.code for d in diags] == ["RB004"]
    assert "200000 nodes" in diags[0].message


def test_merge_keys_and_a_few_aliases_still_work() -> None:
    text = "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nl: [*b, *b]\n"
    doc = load_yaml(text, "x")
    assert doc.diagnostics == []
    assert doc.data["m"] == {"x": 1, "y": 3}  # explicit key wins over the merged one
    assert doc.data["l"] == [{"x": 1, "y": 2}] * 2


def test_duplicate_explicit_key_beside_a_merge_key_is_reported() -> None:
    text = "base: &b {x: 1}\nm:\n  <<: *b\n  y: 1\n  x: 5\n  y: 2\n"
    doc = load_yaml(text, "x")
    assert [(d.code, d.line, d.col) for d in doc.diagnostics] == [("RB002", 6, 3)]
    assert doc.data["m"] == {"x": 5, "y": 1}  # the first explicit value wins, as without <<


def test_alias_count_and_file_size_and_step_count_limits(tmp_path: Path) -> None:
    assert [d.code for d in load_yaml("x: &x 1\nl: [*x, *x, *x]\n", "x", Limits(max_aliases=2)).diagnostics] == [
        "RB004"
    ]
    big = HEAD + "description: '" + "a" * (1024 * 1024) + "'\nsteps: []\n"
    assert [d.code for d in load_yaml(big, "x").diagnostics] == ["RB004"]
    path = tmp_path / "big.yaml"
    path.write_text(big)
    assert [(d.code, d.line) for d in validate_file(path)] == [("RB004", 1)]
    many = HEAD + "steps:\n" + "- {}\n" * 11
    assert [(d.code, d.line, d.col) for d in load_yaml(many, "x", Limits(max_steps=10)).diagnostics] == [
        ("RB004", 3, 1)
    ]


# -- linear validation, capped diagnostics -------------------------------------------------------


def test_a_5000_step_chain_validates_in_under_5_seconds(registry: ActionRegistry) -> None:
    for reverse in (False, True):  # the reverse chain used to hit RecursionError in the cycle check
        text = _chain(5000, reverse=reverse)
        started = time.process_time()
        diags = validate_text(text, "chain.yaml", registry)
        elapsed = time.process_time() - started
        assert diags == []
        assert elapsed < 5, f"{elapsed:.1f} s of CPU for a 5,000-step chain"


def test_a_long_cycle_is_found_without_recursion(registry: ActionRegistry) -> None:
    first = "    with: {channel: c, text: t}\n"
    text = _chain(3000).replace(first, "    needs: [s2999]\n" + first, 1)
    diags = [d for d in validate_text(text, "x.yaml", registry) if d.code == "RB103"]
    assert len(diags) == 1
    assert diags[0].message.startswith("dependency cycle: s0 -> s2999 -> s2998")


def test_10000_unknown_needs_are_fast_and_capped(registry: ActionRegistry) -> None:
    text = HEAD + "steps:\n" + STEP.format(id="a") + "    needs:\n" + "".join(f"      - z{i}\n" for i in range(10000))
    started = time.process_time()
    diags = validate_text(text, "x.yaml", registry)
    assert time.process_time() - started < 5
    assert len(diags) == MAX_DIAGNOSTICS + 1
    assert diags[-1].code == "RB005"
    assert "9900 more" in diags[-1].message


def test_upstream_is_transitive_and_cycle_safe() -> None:
    needs = {"a": [], "b": ["a"], "c": ["b", "ghost"], "x": ["y"], "y": ["x"]}
    assert upstream(needs) == {"a": set(), "b": {"a"}, "c": {"a", "b"}, "x": {"x", "y"}, "y": {"x", "y"}}


# -- accepted but wrong --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "-1", "1e400", "31d"])
def test_durations_must_be_finite_non_negative_and_bounded(value: str, registry: ActionRegistry) -> None:
    text = HEAD + "steps:\n" + STEP.format(id="a") + f"    timeout: {value}\n"
    assert _codes(text, registry) == [(7, 14, "RB003")]


@pytest.mark.parametrize("step_id", ["items", "keys", "values", "get", "pop", "update", "copy"])
def test_step_ids_that_hide_mapping_methods_are_refused(step_id: str, registry: ActionRegistry) -> None:
    assert _codes(HEAD + "steps:\n" + STEP.format(id=step_id), registry) == [(4, 9, "RB118")]


@pytest.mark.parametrize(
    ("for_each", "ok"),
    [
        ('"{{ 3 }}"', False),
        ("\"{{ 'abc' }}\"", False),
        ('"{{ inputs.name }}"', False),
        ('"{{ inputs.names }}"', True),
        ('"n-{{ inputs.names }}"', False),
        ('"{{ inputs.names | reverse | list }}"', True),
        ("[a, b]", True),
    ],
)
def test_for_each_must_give_a_list(for_each: str, ok: bool, registry: ActionRegistry) -> None:
    text = (
        HEAD
        + "inputs:\n  name: {default: x}\n  names: {type: list, default: [x]}\nsteps:\n"
        + "  - id: fan\n    action: slack.post_message\n"
        + f"    for_each: {for_each}\n    with: {{channel: c, text: '{{{{ item }}}}'}}\n"
    )
    assert _codes(text, registry) == ([] if ok else [(9, 15, "RB119")])


def test_approvals_that_can_never_open_are_refused(registry: ActionRegistry) -> None:
    def gate(approvers: str, n: int) -> str:
        return HEAD + f"steps:\n  - id: gate\n    approval: {{approvers: {approvers}, min_approvals: {n}}}\n"

    assert _codes(gate("[U01, U01]", 2), registry) == [(5, 54, "RB120")]  # one distinct approver
    assert _codes(gate("[U01, W02]", 2), registry) == []
    assert _codes(gate("[U01, '@leads']", 5), registry) == []  # group size known only at run time
    assert _codes(gate("[alice, U01]", 1), registry) == [(5, 28, "RB120")]
    assert "CYRILLIC" in validate_text(gate("['@l\u0435ads']", 1), "x.yaml", registry)[0].message


def test_steps_that_can_never_run_are_warned_about(registry: ActionRegistry) -> None:
    text = (
        HEAD
        + "steps:\n"
        + STEP.format(id="a")
        + "    if: \"{{ false }}\"\n"
        + STEP.format(id="b")
        + "    needs: [a]\n"
        + STEP.format(id="c")
        + "    if: \"{{ inputs.go | default(false) }}\"\n"
    )
    diags = validate_text(text, "x.yaml", registry)
    assert [(d.line, d.code, d.severity) for d in diags if d.code == "RB121"] == [
        (7, "RB121", "warning"),
        (11, "RB121", "warning"),
    ]


def test_compensation_with_reads_only_fields_the_action_has(registry: ActionRegistry) -> None:
    text = HEAD + (
        "steps:\n  - id: revoke\n    action: aws.iam.deactivate_access_keys\n    with: {account: a, user: u}\n"
        "    compensate:\n      action: aws.iam.reactivate_access_keys\n"
        "      with: {account: '{{ params.account }}', user: '{{ output.deactivated[0] }}'}\n"
    )
    assert _codes(text, registry) == []
    bad = text.replace("output.deactivated", "output.deactivated_keys").replace("params.account", "params.acount")
    assert sorted(c for _, _, c in _codes(bad, registry)) == ["RB112", "RB115"]


# -- located, not misleading ---------------------------------------------------------------------


def test_unclosed_quote_points_at_the_opening_quote(registry: ActionRegistry) -> None:
    diags = validate_text(HEAD.replace("Hostile", "'Hostile") + "steps: []\n", "x.yaml", registry)
    assert [(d.line, d.col, d.code) for d in diags] == [(2, 8, "RB001")]
    assert "unclosed" in diags[0].message


def test_bad_indentation_says_so(registry: ActionRegistry) -> None:
    diags = validate_text(HEAD + "steps:\n  - id: a\n    action: x\n      with: {}\n", "x.yaml", registry)
    assert "indentation" in diags[0].message and diags[0].hint


def test_nul_and_undecodable_bytes_are_located(tmp_path: Path, registry: ActionRegistry) -> None:
    assert _codes(HEAD + "description: a\x00b\nsteps: []\n", registry) == [(3, 15, "RB001")]
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + b"steps:\n  - id: caf\xe9\n")
    diags = validate_file(path, registry)
    assert [(d.line, d.col, d.code) for d in diags] == [(4, 12, "RB001")]
    with pytest.raises(RunbookError) as info:
        from flows.engine.spec import load_runbook

        load_runbook(path, registry)
    assert ":4:12: error[RB001]" in str(info.value)


def test_homoglyphs_are_named(registry: ActionRegistry) -> None:
    text = HEAD + "steps:\n  - id: a\n    \u0430ction: slack.post_message\n"
    message = validate_text(text, "x.yaml", registry)[0].message
    assert "U+0430 CYRILLIC SMALL LETTER A" in message and "did you mean 'action'" in message
    text = HEAD + "steps:\n" + STEP.format(id="a").replace("slack.post", "sl\u0430ck.post")
    assert "U+0430" in validate_text(text, "x.yaml", registry)[0].message


def test_template_local_macros_are_not_unknown_variables(registry: ActionRegistry) -> None:
    text = HEAD + "steps:\n" + STEP.format(id="a").replace(
        "text: t", "text: \"{% macro x(v) %}{{ v }}!{% endmacro %}{{ x(runbook.title) }}{{ y }}\""
    )
    diags = validate_text(text, "x.yaml", registry)
    assert [d.code for d in diags] == ["RB112"]  # only the real unknown, not the macro
    assert "unknown variable 'y'" in diags[0].message


# -- template files stay inside the runbook's folder (RB117) --------------------------------------


def _book(tmp_path: Path, report: str) -> Path:
    (tmp_path / "book").mkdir(exist_ok=True)
    (tmp_path / "book" / "ok.md.j2").write_text("# {{ step.title }}\n")
    path = tmp_path / "book" / "x.yaml"
    path.write_text(HEAD + f"report: {report}\nsteps:\n" + STEP.format(id="a"))
    return path


@pytest.mark.parametrize("report", ["/proc/self/environ", "../secret.j2", "/etc/passwd", "link.j2"])
def test_template_paths_outside_the_runbook_folder_are_refused(
    report: str, tmp_path: Path, registry: ActionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEMPLATE_DIRS_ENV, raising=False)
    (tmp_path / "secret.j2").write_text("{{ 1 }}")
    path = _book(tmp_path, report)
    (tmp_path / "book" / "link.j2").symlink_to(tmp_path / "secret.j2")
    assert [(d.line, d.col, d.code) for d in validate_file(path, registry)] == [(3, 9, "RB117")]
    with pytest.raises(TemplatePathError):
        resolve_template(path.parent, report)


def test_template_dirs_setting_allows_a_shared_folder(
    tmp_path: Path, registry: ActionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "house.md.j2").write_text("{{ step.title }}")
    monkeypatch.setenv(TEMPLATE_DIRS_ENV, str(shared))
    for report in ("house.md.j2", str(shared / "house.md.j2"), "ok.md.j2"):
        path = _book(tmp_path, report)
        assert validate_file(path, registry) == []
        loaded = load_text(path.read_text(), path.name, registry, base_dir=path.parent)
        plan = compile_plan(loaded.runbook, path, registry)
        expected = shared / "house.md.j2" if "house" in report else path.parent / "ok.md.j2"
        assert plan.default_report == expected.resolve()


def test_compiler_refuses_an_escaping_template_even_without_validate(
    tmp_path: Path, registry: ActionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEMPLATE_DIRS_ENV, raising=False)
    runbook = Runbook.model_validate(
        {"name": "x", "title": "x", "postmortem": "/etc/passwd", "steps": [{"id": "a", "action": "slack.post_message"}]}
    )
    with pytest.raises(RunbookError, match="outside the runbook's folder"):
        compile_plan(runbook, tmp_path / "x.yaml", registry)


def test_report_renderer_refuses_what_validate_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEMPLATE_DIRS_ENV, raising=False)
    secret = tmp_path / "secret.txt"
    secret.write_text("AWS_SECRET=hunter2")
    book = tmp_path / "book"
    book.mkdir()
    (book / "link.j2").symlink_to(secret)
    (book / "inc.j2").write_text("before {% include 'link.j2' %} after")
    (book / "fine.j2").write_text("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(name) }}")
    assert render_template(book / "fine.j2", {"name": "ok"}) == "<ok>"
    for bad in (Path("/proc/self/environ"), book / ".." / "secret.txt", book / "link.j2", book / "inc.j2"):
        with pytest.raises(ReportError) as info:
            render_template(bad, {})
        assert "hunter2" not in str(info.value)
        assert "PATH=" not in str(info.value)
