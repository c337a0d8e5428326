"""Per-ecosystem version semantics and OSV range evaluation."""

from __future__ import annotations

from integrations.inventory.osv import AffectedPackage, OsvRange
from integrations.inventory.versions import normalize_name, scheme_for


def test_npm_semver_prereleases_and_ranges() -> None:
    npm = scheme_for("npm")
    assert npm is not None
    assert npm.compare("1.0.0-rc.1", "1.0.0") < 0
    assert npm.spec_allows("^1.6.0", "1.14.1") is True
    assert npm.spec_allows("^1.6.0", "1.15.0-beta.1") is False  # npm: prereleases need opting in
    assert npm.is_exact_spec("1.14.0") and not npm.is_exact_spec("~1.14.0")
    assert npm.spec_allows("git+https://github.com/a/b.git", "1.0.0") is None
    assert npm.previous_patch("1.14.1") == "1.14.0" and npm.previous_patch("2.0.0") is None


def test_pep440_and_go() -> None:
    pypi, go = scheme_for("PyPI"), scheme_for("Go")
    assert pypi is not None and go is not None
    assert pypi.compare("1.0", "1.0.0") == 0 and pypi.compare("2.0rc1", "2.0") < 0
    assert pypi.is_exact_spec("==2.1.0") and not pypi.is_exact_spec("==2.*")
    assert go.compare("v1.2.3", "v1.10.0") < 0
    assert scheme_for("Maven") is None  # no library here: callers must ask an analyst
    assert normalize_name("PyPI", "Zope.Interface") == "zope-interface"
    assert normalize_name("GitHub Actions", "TJ-Actions/changed-files/sub") == "tj-actions/changed-files"


def test_osv_range_semantics() -> None:
    npm = scheme_for("npm")
    pkg = AffectedPackage(
        ecosystem="npm",
        name="x",
        purl=None,
        versions=(),
        ranges=(
            OsvRange("SEMVER", (("introduced", "1.0.0"), ("fixed", "1.2.0"))),
            OsvRange("SEMVER", (("introduced", "2.0.0"), ("last_affected", "2.1.0"))),
            OsvRange("SEMVER", (("introduced", "3.0.0"), ("limit", "3.5.0"))),
        ),
    )
    status = {v: pkg.evaluate(v, npm).status for v in ("0.9.0", "1.1.9", "1.2.0", "2.1.0", "2.1.1", "3.4.0", "3.5.0")}
    assert status == {
        "0.9.0": "not-affected",
        "1.1.9": "affected",
        "1.2.0": "not-affected",
        "2.1.0": "affected",
        "2.1.1": "not-affected",
        "3.4.0": "affected",
        "3.5.0": "not-affected",
    }
    assert pkg.evaluate("1.1.9", npm).fixed == "1.2.0"
    unknown_eco = AffectedPackage("Maven", "g:a", None, ("1.0",), ())
    assert unknown_eco.evaluate("1.0", None).status == "affected"  # exact listed string still matches
    assert unknown_eco.evaluate("1.1", None).status == "unknown"
