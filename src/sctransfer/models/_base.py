"""What the three neural models (SCJoint, BERMUDA, TRVAE) share on top of scvi-tools' model base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from scvi.model.base import BaseModelClass

from .._utils._presets import PresetConfig, resolve_config, resolve_preset
from .._utils._torch import quiet_training

__all__ = ["NeuralModel"]


class NeuralModel(BaseModelClass):
    """scvi-tools' :class:`~scvi.model.base.BaseModelClass` with sctransfer's presets and quiet output.

    A subclass names its presets (:attr:`presets`, the module-level ``PRESETS`` dict of its package) and
    calls :meth:`_set_config` in its constructor, which resolves ``preset`` and the single-setting
    overrides into :attr:`config` and records them as plain types (``preset_``, ``config_``). Training
    goes through :func:`sctransfer._utils._torch.run_training` (scvi-tools' ``TrainRunner``, quiet
    Lightning, one progress bar on stderr); loading hides scvi-tools' file messages below
    ``sct.settings.verbosity`` 3.
    """

    #: the model's named settings, ``name -> config dataclass``
    presets: ClassVar[Mapping[str, PresetConfig]]
    #: old preset names -> new names (accepted with a ``FutureWarning``)
    renamed_presets: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def resolve_config(
        cls,
        preset: str = "default",
        overrides: Mapping[str, Any] | None = None,
        *,
        faithful: bool | None = None,
    ) -> Any:
        """The settings that ``cls(adata, preset=preset, **overrides)`` uses (a verb reads its choices here).

        Parameters
        ----------
        preset
            Name of the preset (a key of :attr:`presets`).
        overrides
            Single settings that replace the preset's (fields of the config dataclass).
        faithful
            Deprecated: ``True`` for ``preset="faithful"``.
        """
        return cls._resolve(preset, overrides or {}, faithful)[1]

    @classmethod
    def _resolve(cls, preset: str, overrides: Mapping[str, Any], faithful: bool | None) -> tuple[str, Any]:
        # stacklevel 5: the caller of the constructor (or of resolve_config)
        name = resolve_preset(preset, cls.presets, alias=faithful, renamed=cls.renamed_presets, stacklevel=5)
        return name, resolve_config(cls.presets, name, overrides, owner=cls.__name__)

    def _set_config(self, preset: str, overrides: Mapping[str, Any], *, faithful: bool | None = None) -> Any:
        """Resolve ``preset`` and ``overrides``, record them as plain types and return the settings."""
        self.preset_, config = self._resolve(preset, overrides, faithful)
        self.config_ = config.to_dict()
        return config

    @property
    def config(self) -> Any:
        """The settings of this model (a frozen dataclass)."""
        return type(self.presets["default"]).from_dict(self.config_)

    @classmethod
    def load(cls, dir_path: str, adata: Any = None, **kwargs: Any) -> Any:
        """Load a model saved with :meth:`save` (see :meth:`scvi.model.base.BaseModelClass.load`)."""
        with quiet_training():
            return super().load(dir_path, adata=adata, **kwargs)
