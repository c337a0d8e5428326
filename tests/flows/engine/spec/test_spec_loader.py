"""flows.engine.spec.loader: YAML dialect, duplicate keys, source map."""

from __future__ import annotations

from conftest import FIXTURES

from flows.engine.spec.loader import load_yaml


def test_yaml11_booleans_dates_and_sexagesimals_stay_strings() -> None:
    doc = load_yaml((FIXTURES / "yaml11.yaml").read_text(), "yaml11.yaml")
    assert doc.diagnostics == []
    mode = doc.data["inputs"]["mode"]
    assert mode["default"] == "on"
    assert mode["choices"] == ["on", "off", "yes", "no", "y", "n"]
    assert doc.data["inputs"]["when"]["default"] == "2026-03-31"
    assert doc.data["inputs"]["window"]["default"] == "1:30"
    assert doc.data["steps"][0]["with"] == {"channel": "yes", "text": "off"}
    assert doc.data["steps"][0]["continue_on_error"] is True


def test_on_as_a_key_is_a_string() -> None:
    doc = load_yaml("on: push\nyes: 1\nn: off\n", "x.yaml")
    assert doc.data == {"on": "push", "yes": 1, "n": "off"}
    assert doc.diagnostics == []


def test_scalars_still_typed() -> None:
    doc = load_yaml("a: true\nb: False\nc: 12\nd: 1.5\ne: null\nf: ~\ng: 0x1F\nh: -3\ni: 1e3\nj: '12'\n", "x")
    assert doc.data == {
        "a": True,
        "b": False,
        "c": 12,
        "d": 1.5,
        "e": None,
        "f": None,
        "g": 31,
        "h": -3,
        "i": 1000.0,
        "j": "12",
    }


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    doc = load_yaml((FIXTURES / "duplicate_key.yaml").read_text(), "dup.yaml")
    assert [d.format() for d in doc.diagnostics] == [
        "dup.yaml:8:7: error[RB002]: duplicate key 'advisory' (first defined at 7:7)",
        "dup.yaml:9:1: error[RB002]: duplicate key 'title' (first defined at 2:1)",
    ]
    assert doc.data["steps"][0]["with"]["advisory"] == "MAL-2026-2307"  # the first value wins


def test_merge_keys_are_not_duplicates() -> None:
    doc = load_yaml("base: &b {k: 1, j: 2}\nder:\n  <<: *b\n  k: 3\n", "x")
    assert doc.diagnostics == []
    assert doc.data["der"] == {"k": 3, "j": 2}
    assert doc.source_map[("der", "k")] == (4, 3)


def test_source_map_positions_are_one_based_keys_and_values() -> None:
    text = "name: x\nsteps:\n  - id: a\n    with: {user: bob, n: [1, 2]}\n"
    doc = load_yaml(text, "x")
    sm = doc.source_map
    assert sm[("name",)] == (1, 1)
    assert sm.value_positions[("name",)] == (1, 7)
    assert sm[("steps", 0)] == (3, 5)
    assert sm[("steps", 0, "id")] == (3, 5)
    assert sm.value_positions[("steps", 0, "id")] == (3, 9)
    assert sm[("steps", 0, "with", "user")] == (4, 12)
    assert sm.value_positions[("steps", 0, "with", "user")] == (4, 18)
    assert sm[("steps", 0, "with", "n", 1)] == (4, 30)
    assert sm.position(("steps", 0, "with", "missing")) == (4, 5)  # nearest ancestor
    assert sm.position(("nowhere",)) == (1, 1)


def test_syntax_errors_are_rb001_with_position() -> None:
    doc = load_yaml("name: x\nsteps:\n  - id: a\n   bad: [\n", "bad.yaml")
    assert doc.data is None
    [diag] = doc.diagnostics
    assert diag.code == "RB001"
    assert diag.format().startswith("bad.yaml:4:")


def test_python_tags_are_refused() -> None:
    doc = load_yaml("a: !!python/object/apply:os.system [echo hi]\nb: !!python/name:os.system x\n", "x")
    assert [d.code for d in doc.diagnostics][:1] == ["RB001"]
    assert "python/object/apply" in doc.diagnostics[0].message


def test_empty_document() -> None:
    doc = load_yaml("# nothing\n", "x")
    assert doc.data is None and doc.diagnostics == []
