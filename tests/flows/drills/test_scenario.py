"""Drill scenarios: the bundled ones validate; a malformed one gets every problem at once, each at
its file:line:col with a DR code (and ``stanch validate`` prints them, no traceback, exit 1)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.drills import schema
from flows.drills.scenario import (
    DRILL_CODES,
    REPO_DRILLS,
    FleetSpec,
    KillAndResume,
    load_scenario,
    resolve_scenario,
    seconds,
    validate_scenario_file,
    validate_scenario_text,
)
from flows.entrypoints.cli import app
from integrations.errors import InputError, RunbookError
from integrations.sandbox.fleet import VARIANTS

HERE = Path(__file__).parent
BAD = HERE / "scenarios" / "drills" / "everything-wrong.yaml"
READY = ["acm-access-denied", "api-key-exposure-clean", "approver-silent", "clean", "compromised-ci-action-clean",
         "compromised-signing-certificate-clean", "fleet-grid", "iam-throttling-30pct", "killed-mid-fanout",
         "leaked-access-key-clean", "slack-down"]

EXPECTED = [
    "7:3: error[DR102]: runbook 'compromised-dependency' has no input 'advisroy' (did you mean 'advisory'?)",
    "8:46: error[DR106]: no service 'nope' in fleet 'default' (known: billing-api, desktop-app, web-dashboard)",
    "10:28: error[DR105]: approvers[0].after: 'soon' is not a duration (use e.g. 500ms, 30s, 5m, 1h)",
    "12:76: error[DR106]: no account 999999999999 in the sandbox (known: 111111111111, 222222222222, 333333333333)",
    "13:38: error[DR103]: runbook 'compromised-dependency' has no step 'rotate-signing-crt' "
    "(did you mean 'rotate-signing-cert'?)",
    "14:45: error[DR103]: runbook 'compromised-dependency' has no step 'annouce' (did you mean 'announce'?)",
    "14:60: error[DR105]: injects[2].for: '5 minutes' is not a duration (use e.g. 500ms, 30s, 5m, 1h)",
    "17:15: error[DR104]: unknown probe 'iam.ci_keys_inactiv' (did you mean 'iam.ci_keys_inactive'?)",
    "18:7: error[DR107]: probe 's3.manifest_pins_safe_version': invalid parameters: expect: Field required",
    "19:33: error[DR002]: duplicate key 'time_to_contain' (first defined at 19:11)",
]


def test_ready_scenarios_validate_and_resolve() -> None:
    assert sorted(p.stem for p in REPO_DRILLS.glob("*.yaml")) == READY
    for name in READY:
        path = resolve_scenario(name)
        assert path == REPO_DRILLS / f"{name}.yaml"
        assert validate_scenario_file(path) == []
        sc = load_scenario(path)
        assert sc.name == name
        if name.endswith("-clean"):  # one clean drill for each other runbook in runbooks/
            assert sc.runbook == name.removesuffix("-clean")
        elif name != "approver-silent":  # the flagship; approver-silent drills leaked-access-key's 2h gate
            assert sc.runbook == "compromised-dependency"
            assert [u.probe for u in sc.probes.before] == ["iam.keys_untouched", "acm.certificate_reissued"]
    silent = load_scenario(resolve_scenario("approver-silent"))
    assert (silent.runbook, silent.fleet.variant, silent.approval_expires) == ("leaked-access-key", "leaked-key", "3s")
    acm = load_scenario(resolve_scenario("acm-access-denied")).injects[0]
    assert (acm.kind, acm.service, acm.operation, acm.account, acm.error) == (  # type: ignore[union-attr]
        "aws_fault", "acm", "ImportCertificate", "222222222222", "AccessDenied")
    kill = load_scenario(resolve_scenario("killed-mid-fanout")).injects[0]
    assert isinstance(kill, KillAndResume) and (kill.operation, kill.when, kill.skip) == ("PutObject", "after", 1)
    with pytest.raises(InputError, match="no drill scenario named 'nope'"):
        resolve_scenario("nope")


def test_every_mistake_at_once_located() -> None:
    got = [d.format().removeprefix(f"{BAD}:") for d in validate_scenario_file(BAD)]
    assert got == EXPECTED
    with pytest.raises(RunbookError) as info:
        load_scenario(BAD)
    assert len(info.value.diagnostics) == len(EXPECTED)
    assert str(info.value).startswith(f"{BAD}: 10 errors\n{BAD}:7:3: error[DR102]")


@pytest.mark.parametrize(("text", "expected"), [
    ("name: x\ntitle: [unclosed\n", "2:8: error[DR001]: YAML syntax: unclosed"),
    ("- a list\n", "1:1: error[DR003]: a scenario is a mapping (name, title, runbook, ...), not a list"),
    ("name: x\ntitle: X\nrunbook: no-such-runbook\n",
     "3:10: error[DR101]: runbook: no runbook named 'no-such-runbook'"),
    ("name: x\ntitle: X\nrunbook: compromised-dependency\ninjects:\n  - {kind: meteor}\n",
     "5:5: error[DR003]: injects[0]: unknown inject kind 'meteor' (known: aws_fault, slack_outage, kill_and_resume"),
    ("name: x\ntitle: X\nrunbook: compromised-dependency\ntargts: {}\n",
     "4:1: error[DR003]: unknown field 'targts' (did you mean 'targets'?)"),
    ("name: x\nrunbook: compromised-dependency\n", "1:1: error[DR003]: missing required field 'title'"),
])
def test_single_mistakes(text: str, expected: str) -> None:
    got = [d.format() for d in validate_scenario_text(text, "s.yaml")]
    assert any(g.startswith(f"s.yaml:{expected}") for g in got), got


def test_stanch_validate_reports_scenario_diagnostics(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(REPO_DRILLS / "clean.yaml"), str(BAD)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{BAD}:17:15: error[DR104]" in result.output
    # a scenario is recognised by its content, whatever its folder is called; a runbook stays one
    elsewhere = tmp_path / "x"
    elsewhere.mkdir()
    (elsewhere / "bad.yaml").write_text(BAD.read_text(encoding="utf-8"), encoding="utf-8")
    (elsewhere / "good.yaml").write_text((REPO_DRILLS / "clean.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (elsewhere / "runbook.yaml").write_text("name: r\ntitle: R\nsteps:\n  - {id: a, action: nope.x}\n",
                                            encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(elsewhere)])
    assert result.exit_code == 1, result.output
    assert [line.split(": error[")[1][:5] for line in result.output.splitlines() if "error[" in line] == \
        [e.split("error[")[1][:5] for e in EXPECTED] + ["RB104"]
    assert f"ok  {elsewhere / 'good.yaml'}" in result.output


def test_schema_is_current_and_models_mirror_the_sandbox() -> None:
    assert schema.main(["--check"]) == 0, "run `make docs` (python -m flows.drills.schema)"
    # Every drill variant is one the sandbox seeds: the flagship's fleets and the runbook-library
    # variants (leaked-key, tenants, ci-action, signing: the bundled *-clean and approver-silent drills).
    drill_variants = set(typing.get_args(FleetSpec.model_fields["variant"].annotation))
    assert drill_variants - {"grid"} == set(VARIANTS)  # grid is generated: integrations.sandbox.fleet_grid
    assert all(code.startswith("DR") for code in DRILL_CODES)
    doc = (Path(__file__).parents[3] / "docs" / "drills.md").read_text(encoding="utf-8")
    for code, title in DRILL_CODES.items():
        assert f"| {code} |" in doc, f"{code} ({title}) missing from docs/drills.md"


def test_docs_list_every_fleet_variant() -> None:
    """docs/drills.md's variant table and the example's comment name exactly the variants a
    scenario may use (FleetSpec), which are the sandbox's (VARIANTS) plus grid."""
    variants = list(typing.get_args(FleetSpec.model_fields["variant"].annotation))
    doc = (Path(__file__).parents[3] / "docs" / "drills.md").read_text(encoding="utf-8")
    table = doc.split("### Fleet variants", 1)[1].split("###", 1)[0]
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")]
    assert sorted(rows) == sorted(variants)
    comment = next(line for line in doc.splitlines() if line.strip().startswith("variant: default"))
    assert sorted(v.strip() for v in comment.split("#", 1)[1].split("|")) == sorted(variants)


def test_seconds() -> None:
    assert [seconds("500ms"), seconds("30s"), seconds("5m"), seconds("1h"), seconds(2), seconds(None)] == [
        0.5, 30.0, 300.0, 3600.0, 2.0, None]
    with pytest.raises(ValueError, match="not a duration"):
        seconds("soon")


def test_docs_probe_table_is_the_registry() -> None:
    from integrations.probes import default_probes

    doc = (Path(__file__).parents[3] / "docs" / "drills.md").read_text(encoding="utf-8")
    table = doc.split("## The probe registry", 1)[1].split("## ", 1)[0]
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")]
    assert sorted(rows) == default_probes().names() and len(rows) == len(set(rows))


def test_docs_example_is_a_valid_scenario() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "drills.md").read_text(encoding="utf-8")
    example = doc.split("## Writing a scenario", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert validate_scenario_text(example, "example.yaml") == []


def test_hostile_files_are_refused_located(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    codes = [d.code for d in validate_scenario_text(bomb, "bomb.yaml")]
    assert codes == ["DR004"]
    binary = tmp_path / "drills" / "bin.yaml"
    binary.parent.mkdir()
    binary.write_bytes(b"name: x\ntitle: \xff\xfe\n")
    assert [d.format(hint=False) for d in validate_scenario_file(binary)] == [
        f"{binary}:2:8: error[DR001]: not UTF-8: byte 0xff cannot be decoded (invalid start byte)"]
    with pytest.raises(RunbookError):
        load_scenario(binary)
    (hint,) = [d.hint for d in validate_scenario_file(binary)]
    assert hint == "save the scenario as UTF-8"


@pytest.mark.parametrize(("text", "expected"), [
    ("name: x\ntitle: X\nrunbook: compromised-dependency\nrunbook: leaked-access-key\n",
     "4:1: error[DR002]: duplicate key 'runbook' (first defined at 3:1)"),
    ("name: x\ntitle: X\nrunbook: [a, b]\n", "3:10: error[DR003]: runbook: Input should be a valid string"),
])
def test_user_key_names_are_never_reworded(text: str, expected: str) -> None:
    """Only the loader's generic wording ("runbook is … bytes", "save the runbook as UTF-8") is
    said of a scenario; the user's own key ``runbook`` stays ``runbook`` in messages and paths."""
    got = [d.format() for d in validate_scenario_text(text, "s.yaml")]
    assert f"s.yaml:{expected}" in got, got
    assert not any("'scenario'" in g or "error[DR003]: scenario:" in g for g in got), got


def test_validate_and_drill_run_give_the_same_codes(tmp_path: Path) -> None:
    """The same broken scenario file gets the same DR diagnostics from `stanch validate` and
    `stanch drill run`: one whose YAML does not parse but whose top-level keys are a scenario's,
    anywhere; one that is not even a mapping, in a ``drills`` folder. A broken runbook stays RB."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nrunbook: compromised-dependency\ntitle: [unclosed\n", encoding="utf-8")
    (tmp_path / "drills").mkdir()
    listed = tmp_path / "drills" / "listed.yaml"
    listed.write_text("- name: x\n- runbook: compromised-dependency\n", encoding="utf-8")
    runbook = tmp_path / "rb.yaml"
    runbook.write_text("name: r\nsteps: [unclosed\n", encoding="utf-8")
    runner = CliRunner()

    def codes(output: str) -> list[str]:
        return [line.split(": error[")[0] + line.split(": error[")[1][:6] for line in output.splitlines()
                if ": error[" in line]

    for path, code in ((broken, "DR001"), (listed, "DR003")):
        validated = runner.invoke(app, ["validate", str(path)])
        run = runner.invoke(app, ["drill", "run", str(path), "--store", str(tmp_path / "store")])
        assert validated.exit_code == run.exit_code == 1, (validated.output, run.output)
        assert codes(validated.output) == codes(run.output) != [], (validated.output, run.output)
        assert codes(run.output)[0].endswith(f"{code}]"), run.output
    assert "error[RB001]" in runner.invoke(app, ["validate", str(runbook)]).output


GRID = """name: g
title: grid
runbook: compromised-dependency
inputs: {advisory: MAL-2026-2307}
fleet: {variant: grid, accounts: %s, services_per_account: 2, affected: %s}
probes:
  after:
    - {probe: acm.certificate_reissued}
injects:
  - {kind: aws_fault, service: iam, operation: UpdateAccessKey, account: "%s", error: Throttling}
"""


def test_grid_fleet_is_checked_against_what_it_generates() -> None:
    """A grid scenario names generated services and accounts; the fixed fleet's are refused, and
    a probe that compares with a before-observation it never takes is flagged (it would pass)."""
    got = [d.format() for d in validate_scenario_text(GRID % (3, "[svc-03-02]", "400000000003"), "g.yaml")]
    assert got == ["g.yaml:8:15: error[DR108]: probe 'acm.certificate_reissued' compares with its "
                   "before-observation: add {probe: acm.certificate_reissued} under probes.before, or it can "
                   "only record a baseline"]
    got = [d.format() for d in validate_scenario_text(GRID % (21, 50, "222222222222"), "g.yaml")]
    assert any("DR106" in g and "1 to 20 accounts" in g for g in got), got
    assert any("DR106" in g and "no account 222222222222" in g and "400000000001" in g for g in got), got
    got = [d.format() for d in validate_scenario_text(GRID % (2, "[desktop-app]", "400000000001"), "g.yaml")]
    assert any("DR106" in g and "no service desktop-app" in g for g in got), got


def test_a_gated_runbook_without_approvers_is_flagged() -> None:
    """Nobody answers leaked-access-key's 2 h clean-up gate: the drill would wait it out (DR109)."""
    text = ("name: g\ntitle: g\nrunbook: leaked-access-key\ninputs: {access_key_id: AKIAEXAMPLE}\n"
            "fleet: {variant: leaked-key}\n")
    got = [d.format() for d in validate_scenario_text(text, "g.yaml")]
    assert len(got) == 1 and "error[DR109]" in got[0] and "approve-cleanup" in got[0], got
    assert validate_scenario_text(text + "approval_expires: 3s\n", "g.yaml") == []
