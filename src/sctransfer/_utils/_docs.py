"""Shared numpydoc pieces, injected with :func:`inject_docs` so each fact is written once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

DOC_PIECES: dict[str, str] = {
    "random_state": """random_state
        Seed for every random step (subsampling, randomised SVD, weight initialisation). The same
        seed gives the same numbers on CPU.""",
    "copy": """copy
        If ``False`` (default) write the results into the input objects and return ``None``;
        if ``True`` leave the inputs untouched and return changed copies.""",
    "save_model": """save_model
        Directory to save the trained model to (new or empty; written completely or not at all), read back
        with the ``load`` method of its class in :mod:`sctransfer.models` (a neural model is saved with the
        AnnData it was trained on, so ``load(path)`` needs no data). ``None`` keeps no model.""",
    "layer": """layer
        Layer of the reference holding the values to use; ``None`` uses ``.X``.""",
    "metric": """metric
        ``"cosine"`` or ``"euclidean"``.""",
    "ax": """ax
        Axes to draw into; ``None`` creates a new figure.""",
    "show": """show
        Call :func:`matplotlib.pyplot.show`; ``None`` shows only in interactive mode.""",
    "save": """save
        Path to save the figure to (``bbox_inches="tight"``).""",
}


def inject_docs(**extra: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders of a docstring with :data:`DOC_PIECES` (and ``extra``)."""
    pieces = {**DOC_PIECES, **extra}

    def decorator(func: F) -> F:
        if func.__doc__:
            func.__doc__ = func.__doc__.format(**pieces)
        return func

    return decorator
