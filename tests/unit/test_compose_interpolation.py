"""Compose interpolation and env files: the Compose Specification's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.spec.compose.envfile import EnvFileError, parse_env_file, parse_env_text
from portway.spec.compose.interpolate import InterpolationError, interpolate, interpolate_tree

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "value"),
        ("$SET", "value"),
        ("${UNSET}", ""),
        ("${EMPTY}", ""),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${SET:-default}", "value"),
        ("${UNSET-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("a-${SET}-b", "a-value-b"),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("cost: 5$", "cost: 5$"),
        ("${SET?err}", "value"),
        ("${EMPTY?err}", ""),
    ],
)
def test_interpolation_table(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?tell me}", "required variable UNSET is unset or empty: tell me"),
        ("${EMPTY:?tell me}", "required variable EMPTY is unset or empty: tell me"),
        ("${UNSET?gone}", "required variable UNSET is unset: gone"),
        ("${SET", "unclosed"),
        ("${1BAD}", "invalid variable name"),
        ("${SET:x}", "invalid interpolation format"),
    ],
)
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$")):
        interpolate(text, ENV)


def test_tree_reports_every_error_with_its_path_and_leaves_keys_alone() -> None:
    errors: list[tuple[str, str]] = []
    tree = {"services": {"${SET}": {"image": "${A:?a}", "ports": ["${B:?b}", "${SET}"]}}}
    out = interpolate_tree(tree, ENV, "", errors)
    assert [p for p, _ in errors] == ["services.${SET}.image", "services.${SET}.ports[0]"]
    assert out["services"]["${SET}"]["ports"][1] == "value"


def test_env_file_syntax(tmp_path: Path) -> None:
    text = (
        "# comment\n\nA=1\nexport B=two\nC='single $X'\n"
        'D="dq \\"x\\" \\n"\nE=unquoted # comment\nBARE\nF=\n'
    )
    assert parse_env_text(text, "t") == {
        "A": "1",
        "B": "two",
        "C": "single $X",
        "D": 'dq "x" \n',
        "E": "unquoted",
        "BARE": None,
        "F": "",
    }
    with pytest.raises(EnvFileError, match=r"t, line 1: expected KEY=VALUE"):
        parse_env_text("not a line!", "t")
    with pytest.raises(EnvFileError, match="cannot read env file"):
        parse_env_file(tmp_path / "missing.env")
