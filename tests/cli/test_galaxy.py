"""The Galaxy wrappers: each tool's ``<command>`` is rendered with Cheetah from its ``<tests>`` and run.

The rendered command line goes through bash, as in a Galaxy job, with a stand-in ``sctransfer`` on
``PATH`` that records its arguments; the recorded arguments then run through the real CLI in this
process (one package import for all tests). The outputs are checked with Galaxy's own assertion code
(``has_h5_keys``, ``has_text``), the checks ``planemo test`` would make on a Galaxy server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import GALAXY_DIR, TEST_DATA

_WHY = (
    "needs Cheetah3 and galaxy-tool-util, which the galaxy extra (planemo) brings: "
    "`make galaxy-lint` installs them and runs these tests"
)
Template = pytest.importorskip("Cheetah.Template", reason=_WHY, exc_type=ImportError).Template
get_tool_source = pytest.importorskip(
    "galaxy.tool_util.parser", reason=_WHY, exc_type=ImportError
).get_tool_source
verify_assertions = pytest.importorskip(
    "galaxy.tool_util.verify.asserts", reason=_WHY, exc_type=ImportError
).verify_assertions

TOOLS = sorted(GALAXY_DIR.glob("sctransfer_*.xml"))
MAX_TEST_FILE_BYTES = 160 * 1024


# ------------------------------------------------------------------------------ Cheetah namespace
class Value(str):
    """A text, integer, float or select value as the template sees it."""


class Unset(str):
    """An optional parameter left empty: ``str()`` gives ``"None"`` and it is false, as in Galaxy."""

    def __new__(cls) -> Unset:
        return super().__new__(cls, "None")

    def __bool__(self) -> bool:
        return False


class Boolean(str):
    """A boolean: ``str()`` is its truevalue/falsevalue, ``bool()`` whether it is checked."""

    def __new__(cls, text: str, checked: bool) -> Boolean:
        obj = super().__new__(cls, text)
        obj.checked = checked
        return obj

    def __bool__(self) -> bool:
        return self.checked


class Dataset(str):
    """A dataset: ``str()`` is its path (named ``dataset_<n>.dat`` like Galaxy's files)."""

    def __new__(cls, path: Path, ext: str) -> Dataset:
        obj = super().__new__(cls, str(path))
        obj.ext = ext
        obj.element_identifier = path.name
        return obj


class Group(dict):
    """A conditional or section: attribute access to its parameters."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _param_name(param) -> str:
    return param.get("name") or param.get("argument").lstrip("-").replace("-", "_")


class Renderer:
    """Builds the template namespace of one tool test and renders the command."""

    def __init__(self, tool_path: Path, test: dict, workdir: Path) -> None:
        self.source = get_tool_source(str(tool_path))
        self.values = {item["name"]: item for item in test["inputs"]}
        self.workdir = workdir
        self.n_files = 0

    def _dataset(self, filename: str, ext: str) -> Dataset:
        self.n_files += 1
        target = self.workdir / f"dataset_{self.n_files}.dat"
        shutil.copyfile(TEST_DATA / filename, target)
        return Dataset(target, ext)

    def _value(self, param, key: str):
        kind = param.get("type")
        given = self.values.get(key)
        raw = None if given is None else given["value"]
        if kind == "data":
            if raw is None:
                assert param.get("optional") == "true", f"test gives no file for {key}"
                return Unset()
            ext = given["attributes"].get("ftype") or param.get("format").split(",")[0]
            return self._dataset(raw, ext)
        if kind == "boolean":
            checked = (raw or param.get("checked", "false")).lower() in ("true", "yes", "1")
            return Boolean(param.get("truevalue" if checked else "falsevalue", ""), checked)
        if kind == "select":
            if raw is None:
                options = param.findall("option")
                chosen = [o for o in options if o.get("selected") == "true"] or options[:1]
                raw = chosen[0].get("value")
            return Value(raw)
        raw = param.get("value", "") if raw is None else raw
        if raw == "" and param.get("optional") == "true":
            return Unset()
        return Value(raw)

    def _group(self, element, prefix: str) -> Group:
        group = Group()
        for child in element:
            if child.tag == "param":
                name = _param_name(child)
                group[name] = self._value(child, prefix + name)
            elif child.tag == "conditional":
                name = child.get("name")
                test_param = child.find("param")
                test_name = _param_name(test_param)
                selected = self._value(test_param, f"{prefix}{name}|{test_name}")
                when = next(w for w in child.findall("when") if w.get("value") == str(selected))
                sub = self._group(when, f"{prefix}{name}|")
                sub[test_name] = selected
                group[name] = sub
            elif child.tag == "section":
                group[child.get("name")] = self._group(child, f"{prefix}{child.get('name')}|")
            elif child.tag == "repeat":  # pragma: no cover - no wrapper uses one
                raise NotImplementedError("repeat parameters")
        return group

    def render(self) -> tuple[str, dict[str, Path]]:
        root = self.source.root
        namespace = self._group(root.find("inputs"), "")
        outputs = {}
        for data in root.find("outputs").findall("data"):
            outputs[data.get("name")] = self.workdir / f"output_{data.get('name')}.dat"
            namespace[data.get("name")] = Dataset(outputs[data.get("name")], data.get("format"))
        namespace["__tool_directory__"] = str(GALAXY_DIR)
        text = str(Template(source=self.source.parse_command(), searchList=[namespace]))
        # as Galaxy does: strip every line, then join the lines with spaces
        command = " ".join(line.strip() for line in text.splitlines()).strip()
        return command, outputs


def _cases() -> list:
    cases = []
    for tool in TOOLS:
        tests = get_tool_source(str(tool)).parse_tests_to_dict()["tests"]
        cases += [pytest.param(tool, i, test, id=f"{tool.stem}-{i + 1}") for i, test in enumerate(tests)]
    return cases


_STANDIN = """#!/bin/sh
# records the arguments of each call, NUL-separated, one file per call
f=$(mktemp "$SCT_CALLS/call.XXXXXX")
printf '%s\\0' "$@" > "$f"
"""


@pytest.mark.parametrize(("tool", "index", "test"), _cases())
def test_rendered_command_runs(tool, index, test, cli, tmp_path):
    work = tmp_path / "job"
    calls = tmp_path / "calls"
    bindir = tmp_path / "bin"
    for folder in (work, calls, bindir):
        folder.mkdir()
    standin = bindir / "sctransfer"
    standin.write_text(_STANDIN)
    standin.chmod(0o755)

    command, outputs = Renderer(tool, test, work).render()
    assert "None" not in command, f"an unset optional parameter reached the command line: {command}"
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "SCT_CALLS": str(calls)}
    env["GALAXY_SLOTS"] = "1"
    proc = subprocess.run(
        ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr

    recorded = sorted(calls.iterdir())
    assert len(recorded) == 1, f"expected one sctransfer call, got {len(recorded)}: {command}"
    argv = recorded[0].read_bytes().split(b"\0")[:-1]
    result = cli(*(arg.decode() for arg in argv))
    assert result.code == 0, f"{command}\n{result.err}"

    expected = test.get("expect_num_outputs")
    if expected is not None:
        assert len(outputs) == int(expected)
    for output in test["outputs"]:
        path = outputs[output["name"]]
        assert path.is_file(), f"no output {output['name']}"
        assertions = output["attributes"]["assert_list"]
        assert assertions, f"{tool.name}: output {output['name']} has no assertion"
        verify_assertions(path.read_bytes(), assertions)


@pytest.mark.parametrize("tool", TOOLS, ids=[t.stem for t in TOOLS])
def test_every_h5_output_is_checked_with_has_h5_keys(tool):
    source = get_tool_source(str(tool))
    h5_outputs = {
        d.get("name")
        for d in source.root.find("outputs").findall("data")
        if d.get("format") in ("h5ad", "h5mu")
    }
    tests = source.parse_tests_to_dict()["tests"]
    assert tests
    for test in tests:
        checked = {
            o["name"]
            for o in test["outputs"]
            if any(a["tag"] == "has_h5_keys" for a in o["attributes"]["assert_list"])
        }
        assert h5_outputs <= checked
    command = source.parse_command()
    assert source.root.find("command").get("detect_errors") == "exit_code"
    assert re.search(r"^sctransfer [a-z-]+", command.strip())


def test_every_verb_has_a_wrapper():
    from sctransfer import cli

    wrapped = set()
    for tool in TOOLS:
        match = re.search(
            r"^sctransfer ([a-z-]+(?: (?:train|predict))?)",
            get_tool_source(str(tool)).parse_command().strip(),
        )
        wrapped.add(match.group(1).split()[0])
    assert {verb.name for verb in cli.available_verbs()} <= wrapped


def test_version_token_matches_the_package():
    from packaging.version import Version

    import sctransfer

    macros = (GALAXY_DIR / "macros.xml").read_text()
    token = re.search(r'<token name="@TOOL_VERSION@">([^<]+)</token>', macros).group(1)
    assert Version(sctransfer.__version__).base_version == token


def test_test_data_is_small_and_regenerable():
    files = [p for p in TEST_DATA.iterdir() if p.is_file()]
    assert (TEST_DATA / "make_test_data.py") in files
    for path in files:
        assert path.stat().st_size <= MAX_TEST_FILE_BYTES, (
            f"{path.name} is larger than {MAX_TEST_FILE_BYTES} bytes"
        )
    used = set()
    for tool in TOOLS:
        used |= set(re.findall(r'value="([^"]+\.(?:h5ad|h5mu|tsv|bed))"', tool.read_text()))
    assert used <= {p.name for p in files}
