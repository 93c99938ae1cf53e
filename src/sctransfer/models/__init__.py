"""Public model classes (scvi-tools models and sklearn-like classifiers)."""

__all__: list[str] = []
