"""Named parameter sets ("presets") of the models: one vocabulary, resolved in one place.

Every model keeps its presets in one module-level dict (``PRESETS``, name -> settings) and takes
``preset="default" | "faithful" | ...``; ``"faithful"`` reproduces the original implementation. The
``Literal`` type of the names is built from that dict, so the command line reads its choices from it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from typing import Any, ClassVar, Literal, TypeVar

from ._anndata import to_plain
from ._validation import check_choice

__all__ = ["PresetConfig", "preset_type", "resolve_config", "resolve_preset"]

C = TypeVar("C", bound="PresetConfig")


class PresetConfig:
    """Conversions of a frozen settings dataclass to and from plain types (lists, not tuples)."""

    #: old field names of saved models -> function of the old value returning ``(new name, new value)``
    _renamed_fields: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain types (what ``.uns`` and a saved model store)."""
        return to_plain(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """The settings from :meth:`to_dict`'s output (lists become tuples again)."""
        values = dict(values)
        for old, convert in cls._renamed_fields.items():
            if old in values:
                new, value = convert(values.pop(old))
                values.setdefault(new, value)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def preset_type(presets: Mapping[str, Any]) -> Any:
    """``Literal[<the names of presets>]``, for the signatures of the model and its verbs."""
    return Literal[tuple(presets)]  # type: ignore[valid-type]


def resolve_preset(
    preset: str,
    presets: Mapping[str, Any],
    *,
    alias: bool | None = None,
    alias_name: str = "faithful",
    renamed: Mapping[str, str] | None = None,
    stacklevel: int = 3,
) -> str:
    """Validate ``preset`` and apply the deprecated spellings of a preset.

    Parameters
    ----------
    preset
        The name given.
    presets
        The model's presets (name -> settings).
    alias
        Value of the deprecated boolean switch (``faithful=`` or ``reference=``); ``None`` when not given.
        ``True`` means ``preset="faithful"``, ``False`` ``preset="default"``; a conflicting ``preset``
        raises.
    alias_name
        The switch's name, for the messages.
    renamed
        Old preset names -> their new names (accepted with a ``FutureWarning``).
    stacklevel
        Of the ``FutureWarning``: 2 points at the caller of the function that calls this one.

    Returns
    -------
    The preset's name.
    """
    if alias is not None:
        if not isinstance(alias, bool):
            raise ValueError(f"{alias_name} must be True or False, got {alias!r} (better: use preset=).")
        wanted = "faithful" if alias else "default"
        warnings.warn(
            f"{alias_name}={alias} is deprecated; use preset={wanted!r}.",
            FutureWarning,
            stacklevel=stacklevel,
        )
        if preset not in ("default", wanted):
            raise ValueError(
                f"{alias_name}={alias} and preset={preset!r} contradict each other; pass preset= alone."
            )
        preset = wanted
    if renamed and isinstance(preset, str) and preset in renamed:
        warnings.warn(
            f"preset={preset!r} is deprecated; it is now called preset={renamed[preset]!r}.",
            FutureWarning,
            stacklevel=stacklevel,
        )
        preset = renamed[preset]
    return check_choice(preset, "preset", tuple(presets))


def resolve_config(presets: Mapping[str, C], preset: str, overrides: Mapping[str, Any], *, owner: str) -> C:
    """The settings of ``presets[preset]`` with single fields replaced by ``overrides``.

    Lists become tuples (the settings are frozen dataclasses); an unknown field raises a ``ValueError``
    naming the valid ones.
    """
    base = presets[preset]
    valid = [f.name for f in fields(base)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"unknown {owner} settings {unknown}; valid: {valid}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(base, **values)  # type: ignore[type-var]
