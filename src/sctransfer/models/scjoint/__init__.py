"""scJoint: RNA -> ATAC label transfer by co-training one encoder on both modalities."""

from ._model import DEFAULT, FAITHFUL, SCJoint, SCJointConfig
from ._module import SCJointModule

__all__ = ["DEFAULT", "FAITHFUL", "SCJoint", "SCJointConfig", "SCJointModule"]
