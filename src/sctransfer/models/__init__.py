"""Public model classes (scvi-tools models and sklearn-like classifiers)."""

from .castle import CaSTLe
from .scjoint import SCJoint

__all__: list[str] = ["CaSTLe", "SCJoint"]
