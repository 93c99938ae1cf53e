"""Plots in scanpy's style (matplotlib; ``ax=``, ``show=``, ``save=``)."""

__all__: list[str] = []
