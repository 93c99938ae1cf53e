"""Public model classes (scvi-tools models and sklearn-like classifiers)."""

from .bermuda import BERMUDA
from .castle import CaSTLe
from .ensemble import EnsembleTransfer
from .scjoint import SCJoint
from .trvae import TRVAE

__all__: list[str] = ["BERMUDA", "TRVAE", "CaSTLe", "EnsembleTransfer", "SCJoint"]
