"""Plots in scanpy's style (matplotlib; ``ax=``, ``show=``, ``save=``)."""

from ._label_transfer import confidence, confusion, joint_embedding, sankey

__all__ = ["confidence", "confusion", "joint_embedding", "sankey"]
