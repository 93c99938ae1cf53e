"""What the three neural models (SCJoint, BERMUDA, TRVAE) share on top of scvi-tools' model base."""

from __future__ import annotations

from typing import Any

from scvi.model.base import BaseModelClass

from .._utils._torch import quiet_training

__all__ = ["NeuralModel"]


class NeuralModel(BaseModelClass):
    """scvi-tools' :class:`~scvi.model.base.BaseModelClass` with sctransfer's quiet output.

    Training goes through :func:`sctransfer._utils._torch.run_training` (quiet Lightning, one progress
    bar on stderr); loading hides scvi-tools' file messages below ``sct.settings.verbosity`` 3.
    """

    @classmethod
    def load(cls, dir_path: str, adata: Any = None, **kwargs: Any) -> Any:
        """Load a model saved with :meth:`save` (see :meth:`scvi.model.base.BaseModelClass.load`)."""
        with quiet_training():
            return super().load(dir_path, adata=adata, **kwargs)
