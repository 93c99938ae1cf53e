"""Plots in scanpy's style (matplotlib; ``ax=``, ``show=``, ``save=``)."""

from ._alignment import alignment_scores
from ._label_transfer import confidence, confusion, joint_embedding, sankey
from ._prediction import mean_expression

__all__ = ["alignment_scores", "confidence", "confusion", "joint_embedding", "mean_expression", "sankey"]
