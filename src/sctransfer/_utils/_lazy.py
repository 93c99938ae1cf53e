"""Lazy attributes for packages whose members pull in heavy backends (torch, Lightning, scvi-tools).

``import sctransfer`` must stay as light as scanpy: the neural models and the torch MMD load on first
access, as scanpy loads its heavy backends inside the functions that need them (PEP 562).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, members: Mapping[str, str], eager: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package
        The package's ``__name__``.
    members
        Attribute name -> ``"submodule:attribute"`` (relative to ``package``) that defines it, or
        ``"submodule"`` when the member is the submodule itself.
    eager
        The package's ``globals()``: a loaded member is cached there, so it loads once.
    """

    def __getattr__(name: str) -> Any:
        if name not in members:
            # a submodule (``sct.models.scjoint``) loads on access too, as after an eager import
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = members[name].partition(":")
        value = importlib.import_module(module, package)
        if attribute:
            value = getattr(value, attribute)
        eager[name] = value  # type: ignore[index]
        return value

    def __dir__() -> list[str]:
        return sorted(set(eager) | set(members))

    return __getattr__, __dir__
