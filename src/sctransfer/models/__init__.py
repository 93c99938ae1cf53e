"""Public model classes (scvi-tools models and sklearn-like classifiers).

The classes load on first access, so that ``import sctransfer`` does not import torch.
"""

from typing import TYPE_CHECKING

from .._utils._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .bermuda import BERMUDA
    from .castle import CaSTLe
    from .ensemble import EnsembleTransfer
    from .scjoint import SCJoint
    from .trvae import TRVAE

__all__: list[str] = ["BERMUDA", "TRVAE", "CaSTLe", "EnsembleTransfer", "SCJoint"]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "BERMUDA": ".bermuda:BERMUDA",
        "CaSTLe": ".castle:CaSTLe",
        "EnsembleTransfer": ".ensemble:EnsembleTransfer",
        "SCJoint": ".scjoint:SCJoint",
        "TRVAE": ".trvae:TRVAE",
    },
    globals(),
)
