"""Command-line options generated from the verbs: names, types, defaults, choices and help.

Every option of a subcommand is a keyword of a Python function: its type hint gives the argparse type or
choices, its default the option's default, and the first sentence of its numpydoc description the help.
A function's ``**kwargs`` become repeatable ``--kwarg KEY=VALUE`` pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._base import UsageError


def resolve(dotted: str) -> Any:
    """The object ``sctransfer.<dotted>`` (imported when a subcommand is built, never for ``--help``)."""
    module, *names = dotted.split(".")
    obj: Any = importlib.import_module(f"sctransfer.{module}")
    for name in names:
        obj = getattr(obj, name)
    return obj


def parameter_help(func: Callable[..., Any]) -> dict[str, str]:
    """The first sentence of each parameter's description in the numpydoc ``Parameters`` section."""
    lines = (inspect.getdoc(func) or "").splitlines()
    if "Parameters" not in lines:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []
    body = lines[lines.index("Parameters") + 2 :]
    for i, line in enumerate([*body, ""]):
        header = bool(line) and not line.startswith(" ")
        if header or i == len(body):
            sentence = " ".join(" ".join(text).split())
            sentence = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rpartition(".")[2], sentence)
            sentence = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", sentence)[0].rstrip(".").replace("``", "")
            out.update(dict.fromkeys(names, sentence))
            if i + 1 < len(body) and body[i + 1].startswith("---"):
                break  # the next section
            names, text = [n.strip().lstrip("*") for n in line.split(":")[0].split(",")], []
        elif line.strip():
            text.append(line.strip())
    return out


def _members(hint: Any) -> list[Any]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return list(typing.get_args(hint)) if union else [hint]


def simple(hint: Any) -> bool:
    """Whether a command-line option can hold values of type ``hint`` (scalars, literals, ``None``)."""
    return all(
        m in (bool, int, float, str, type(None)) or typing.get_origin(m) is typing.Literal
        for m in _members(hint)
    )


def option_kwargs(hint: Any, default: Any) -> dict[str, Any]:
    """argparse keywords (type, choices or action, metavar) for a parameter of type ``hint``."""
    members = _members(hint)
    nullable = type(None) in members
    members = [m for m in members if m is not type(None)]
    if members == [bool]:
        if default is None:  # a method option: unset, --x or --no-x
            return {"action": argparse.BooleanOptionalAction}
        return {"action": argparse.BooleanOptionalAction} if default is True else {"action": "store_true"}
    literals = [v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]
    scalars = [m for m in (int, float, str) if m in members]
    if literals and not scalars and not nullable:
        return {"choices": literals}
    if scalars == [str] and not literals:
        return {}
    if len(scalars) == 1 and not literals and not nullable:
        return {"type": scalars[0], "metavar": scalars[0].__name__.upper()}
    words = [*(["none"] if nullable else []), *map(str, literals), *(s.__name__.upper() for s in scalars)]

    def convert(text: str) -> Any:
        if nullable and text.lower() == "none":
            return None
        for value in literals:
            if text == str(value):
                return value
        for scalar in scalars:
            try:
                return scalar(text)
            except ValueError:
                continue
        raise argparse.ArgumentTypeError(f"expected {' or '.join(w.lower() for w in words)}, got {text!r}")

    convert.__name__ = "/".join(words)
    return {"type": convert, "metavar": "{" + ",".join(words) + "}" if len(words) > 1 else words[0]}


def parse_kwarg(value: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it can be."""
    key, sep, raw = value.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a keyword name, got {value!r}")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw
    return key.strip(), parsed


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_verb_options(
    parser: argparse.ArgumentParser, dotted: str, *, skip: Sequence[str] = ("copy",), record: bool = True
) -> None:
    """One option per keyword-only argument of ``sctransfer.<dotted>``: name, type, default and help.

    A ``**kwargs`` of the function becomes ``--kwarg KEY=VALUE`` (help: its docstring entry). With
    ``record``, the names are recorded in ``args`` as the verb's keywords (see :func:`verb_params`).
    """
    func = resolve(dotted)
    hints = typing.get_type_hints(func)
    docs = parameter_help(func)
    group = parser.add_argument_group(f"options of sct.{dotted}")
    names = []
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD and "kwarg" not in skip:
            group.add_argument(
                "--kwarg", action="append", type=parse_kwarg, metavar="KEY=VALUE",
                help=f"{docs.get(name, 'another keyword')} (repeatable; VALUE is read as JSON when it can be)",
            )  # fmt: skip
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or name in skip:
            continue
        required = param.default is inspect.Parameter.empty
        kwargs = option_kwargs(hints.get(name, str), None if required else param.default)
        text = docs.get(name, "").replace("%", "%%")
        if not required and param.default is not None and param.default is not False:
            text += " (default: %(default)s)"
        group.add_argument(
            _flag(name), dest=name, required=required,
            **({} if required else {"default": param.default}), help=text, **kwargs,
        )  # fmt: skip
        names.append(name)
    if record:
        parser.set_defaults(_verb_options=names)


def verb_params(args: argparse.Namespace) -> dict[str, Any]:
    """The verb's keyword arguments as given: the generated options, then the ``--kwarg`` pairs."""
    params = {name: getattr(args, name) for name in args._verb_options}
    for key, value in getattr(args, "kwarg", None) or ():
        if key in params:
            raise UsageError(f"--kwarg {key}=... repeats an option given already ({_flag(key)})")
        params[key] = value
    return params


def _documented_parameters(source: Any, docs_from: Any) -> Iterable[tuple[str, Any, str]]:
    """(name, type hint, help) of the keyword options of a function or the fields of a dataclass."""
    hints = typing.get_type_hints(source)
    docs = parameter_help(docs_from)
    if dataclasses.is_dataclass(source):
        names = [f.name for f in dataclasses.fields(source)]
    else:
        kinds = (inspect.Parameter.KEYWORD_ONLY,)
        names = [n for n, p in inspect.signature(source).parameters.items() if p.kind in kinds]
    for name in names:
        yield name, hints.get(name, str), docs.get(name, "")


def add_method_options(
    parser: argparse.ArgumentParser, sources: dict[str, tuple[str, str]], *, skip: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Options of each method of a verb, from where the method declares them (signature or dataclass).

    ``sources`` maps each method to the dotted names of the object declaring its options and of the one
    documenting them. Every option is unset by default (the method's own default applies). Returns the
    methods of each option, for :func:`method_params`.
    """
    owners: dict[str, list[str]] = {}
    declared: dict[str, tuple[Any, str]] = {}
    skip = set(skip)
    for method, (source, docs_from) in sources.items():
        for name, hint, text in _documented_parameters(resolve(source), resolve(docs_from)):
            if name in skip or not simple(hint):
                continue
            owners.setdefault(name, []).append(method)
            declared.setdefault(name, (hint, text))
    groups = {
        m: parser.add_argument_group(f"options of --method {m} (unset: the method's default)")
        for m in sources
    }
    for name, methods in owners.items():
        hint, text = declared[name]
        where = "" if len(methods) == 1 else f" (--method {' or '.join(methods)})"
        groups[methods[0]].add_argument(
            _flag(name),
            dest=name,
            default=None,
            help=f"{text}{where}".replace("%", "%%"),
            **option_kwargs(hint, None),
        )
    return {name: tuple(methods) for name, methods in owners.items()}


def method_params(
    args: argparse.Namespace, owners: dict[str, tuple[str, ...]], params: dict[str, Any]
) -> dict[str, Any]:
    """``params`` and the options of ``params["method"]`` given; another method's option is a usage error."""
    given = {name: getattr(args, name) for name in owners if getattr(args, name) is not None}
    for name in given:
        if params["method"] not in owners[name]:
            raise UsageError(
                f"{_flag(name)}: option of --method {' or '.join(owners[name])}, not of --method {params['method']}"
            )
        if name in params:
            raise UsageError(f"--kwarg {name}=... repeats an option given already ({_flag(name)})")
    return {**params, **given}


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options every subcommand has: ``--summary-json``, ``-v`` and ``--debug``."""
    group = parser.add_argument_group("run options")
    group.add_argument(
        "--summary-json",
        metavar="PATH",
        help="also write the run's options, input/output shapes and metrics to this JSON file",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show progress messages (-vv: debug and library warnings)",
    )
    group.add_argument("--debug", action="store_true", help="show the full traceback of an error")
