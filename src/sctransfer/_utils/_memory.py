"""Clear messages for the steps whose large allocations can run out of memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def memory_step(step: str, need_bytes: float, advice: str) -> Iterator[None]:
    """Re-raise a :class:`MemoryError` inside the block with the step, its estimated need and what helps.

    Parameters
    ----------
    step
        What runs, for example ``"the joint PCA of 200,000 cells x 2,000 features"``.
    need_bytes
        Estimated working memory of the step beyond its inputs.
    advice
        The options that lower the step's memory, as a sentence fragment.
    """
    try:
        yield
    except MemoryError as err:
        raise MemoryError(
            f"{step} ran out of memory: it needs about {need_bytes / 1e9:.2f} GB on top of its inputs. "
            f"To lower it, {advice}."
        ) from err
