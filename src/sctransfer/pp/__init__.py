"""Preprocessing: AnnData -> AnnData transformations (shared features, normalisation)."""

__all__: list[str] = []
