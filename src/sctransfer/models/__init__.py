"""Public model classes (scvi-tools models and sklearn-like classifiers)."""

from .bermuda import BERMUDA
from .castle import CaSTLe
from .scjoint import SCJoint

__all__: list[str] = ["BERMUDA", "CaSTLe", "SCJoint"]
