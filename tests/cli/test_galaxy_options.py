"""The Galaxy wrappers agree with the command line, which is generated from the verbs' signatures.

Every ``<param argument="--x">`` of a wrapper (macros expanded) must be an option of its subcommand, with
the same default, choices within the option's choices, and a boolean checked exactly when the option is
on by default. Reads the XML with the standard library only, so it runs in every test environment.
"""

from __future__ import annotations

import argparse
import copy
import re
import xml.etree.ElementTree as ET

import pytest

from sctransfer import cli as cli_mod
from tests.cli.conftest import GALAXY_DIR

TOOLS = sorted(GALAXY_DIR.glob("sctransfer_*.xml"))
MACROS = {m.get("name"): m for m in ET.parse(GALAXY_DIR / "macros.xml").getroot().iter("xml")}


def _expanded(element: ET.Element) -> ET.Element:
    """``element`` with every ``<expand macro=...>`` replaced by the macro's content, tokens filled in."""
    out = copy.copy(element)
    out[:] = []
    for child in element:
        if child.tag != "expand":
            out.append(_expanded(child))
            continue
        text = ET.tostring(MACROS[child.get("macro")], encoding="unicode")
        for name, value in child.attrib.items():
            text = text.replace(f"@{name.upper()}@", value)
        out.extend(_expanded(ET.fromstring(text)))
    return out


def _subcommand(tool) -> tuple[list[str], argparse.ArgumentParser]:
    root = ET.parse(tool).getroot()
    words = re.search(r"sctransfer\s+([a-z-]+)(?:\s+(train|predict)\b)?", root.find("command").text).groups()
    words = [w for w in words if w]
    parser = cli_mod.build_parser(only=words[0])
    for word in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return words, parser


@pytest.mark.parametrize("tool", TOOLS, ids=[t.stem for t in TOOLS])
def test_wrapper_params_match_the_command_line(tool):
    words, parser = _subcommand(tool)
    options = {flag: action for action in parser._actions for flag in action.option_strings}
    params = [
        p for p in _expanded(ET.parse(tool).getroot().find("inputs")).iter("param") if p.get("argument")
    ]
    assert params, tool.name
    for param in params:
        flag, kind = param.get("argument"), param.get("type")
        where = f"{tool.name} {flag}"
        assert flag in options, f"{where}: not an option of 'sctransfer {' '.join(words)}'"
        action = options[flag]
        if kind == "select" and action.choices is not None:
            values = [o.get("value") for o in param.iter("option")]
            assert set(values) <= {str(c) for c in action.choices}, where
            selected = [o.get("value") for o in param.iter("option") if o.get("selected") == "true"]
            if selected and action.default is not None:
                assert selected == [str(action.default)], where
        elif kind == "boolean" and param.get("truevalue") == flag:
            assert (param.get("checked") == "true") == (action.default is True), where
        elif kind in ("integer", "float", "text") and param.get("value") and action.default is not None:
            cast = {"integer": int, "float": float, "text": str}[kind]
            assert cast(param.get("value")) == action.default, where
