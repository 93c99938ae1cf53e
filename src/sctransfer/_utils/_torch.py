"""Torch and Lightning helpers shared by the neural models: CPU settings, quiet training, progress."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from ._logging import logger
from ._settings import settings

__all__ = ["cpu_training_settings", "quiet_training", "register_fields", "run_training"]

#: loggers of the training libraries, quietened below verbosity 3 (hints)
_LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "scvi")
#: modules whose warnings are hidden below verbosity 3 (their advice concerns their own machinery)
_LIBRARY_MODULES = r"(lightning|pytorch_lightning|lightning_fabric|scvi|torch)(\..*)?$"


@contextmanager
def cpu_training_settings(num_threads: int | None) -> Iterator[None]:
    """Flush denormal floats to zero and cap torch's CPU threads while training.

    Sparse inputs with weight penalties drive many weights and optimiser moments into the denormal
    range, where x86 arithmetic is up to ~50x slower (measured with scJoint on MOp: 468 s instead of
    9 s for the same run); flushing them changes no result at float32 precision. The models here train
    on small minibatches, so extra threads mostly spin: one thread was ~25x faster than two for scJoint
    on a 2-core machine that was also running other work.
    """
    previous = torch.get_num_threads()
    torch.set_flush_denormal(True)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(previous)


@contextmanager
def quiet_training() -> Iterator[None]:
    """Hide the training libraries' banners, tips and internal warnings below verbosity 3.

    Lightning announces the hardware, advertises services and reports why ``fit`` stopped; scvi-tools
    and torch warn about their own internals. None of it is actionable for a user of sctransfer, so it
    shows only at ``sct.settings.verbosity >= 3``.
    """
    if settings.verbosity >= 3:
        yield
        return
    levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}
    try:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_LIBRARY_MODULES)
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*deprecated")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _epoch_progress(description: str, total: int) -> Any:
    """A Lightning callback with one progress bar over the epochs, on stderr."""
    from lightning.pytorch.callbacks import Callback
    from tqdm.auto import tqdm

    class EpochProgress(Callback):
        def __init__(self) -> None:
            self.bar: Any = None

        def on_train_start(self, trainer, pl_module) -> None:
            self.bar = tqdm(total=total, desc=description, unit="epoch", file=sys.stderr, leave=False)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if self.bar is None:
                return
            loss = trainer.callback_metrics.get("train_loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.3g}", refresh=False)
            self.bar.update(1)

        def on_train_end(self, trainer, pl_module) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochProgress()


def run_training(
    model: Any,
    *,
    training_plan: Any,
    data_splitter: Any,
    max_epochs: int,
    description: str,
    accelerator: str | None = None,
    devices: int | str | Sequence[int] = "auto",
    num_threads: int | None = 1,
    enable_progress_bar: bool | None = None,
    callbacks: Sequence[Any] = (),
    **trainer_kwargs: Any,
) -> None:
    """Train ``model``'s module with scvi-tools' :class:`~scvi.train.TrainRunner`, quietly.

    Parameters
    ----------
    model
        The scvi-tools model (its ``history_`` and ``trainer`` are set by the runner).
    training_plan, data_splitter
        The Lightning module and data module.
    max_epochs
        Epochs to train.
    description
        The progress bar's label, for example ``"scJoint stage 1"``.
    accelerator
        Lightning accelerator; ``None`` uses ``sct.settings.device``.
    devices
        Lightning devices.
    num_threads
        torch CPU threads while training (``None`` leaves torch's setting).
    enable_progress_bar
        Show sctransfer's progress bar over the epochs (on stderr); ``None`` follows
        ``sct.settings.progress_bar``. Lightning's own bar is never shown.
    callbacks
        More Lightning callbacks.
    **trainer_kwargs
        Passed to :class:`scvi.train.Trainer` (for example ``early_stopping=True`` with
        ``early_stopping_monitor`` and ``early_stopping_patience``: scvi-tools' early stopping, whose
        reason for stopping goes to sctransfer's log instead of stdout).
    """
    from scvi.train import LoudEarlyStopping, TrainRunner

    if "enable_progress_bar" in trainer_kwargs:  # the documented trainer keyword keeps working
        value = trainer_kwargs.pop("enable_progress_bar")
        enable_progress_bar = value if enable_progress_bar is None else enable_progress_bar
    show = settings.progress_bar if enable_progress_bar is None else bool(enable_progress_bar)
    callbacks = list(callbacks)
    if show and max_epochs > 0:
        callbacks.append(_epoch_progress(description, max_epochs))
    trainer_kwargs.setdefault("log_every_n_steps", 1)
    trainer_kwargs.setdefault("enable_model_summary", False)
    with ExitStack() as stack:
        stack.enter_context(quiet_training())  # the trainer announces the hardware when it is built
        runner = TrainRunner(
            model, training_plan=training_plan, data_splitter=data_splitter, max_epochs=max_epochs,
            accelerator=settings.device if accelerator is None else accelerator, devices=devices,
            callbacks=callbacks, enable_progress_bar=False, **trainer_kwargs,
        )  # fmt: skip
        for callback in runner.trainer.callbacks:
            if isinstance(callback, LoudEarlyStopping):  # it prints its reason on teardown
                callback.teardown = _log_stop_reason(callback)
        stack.enter_context(cpu_training_settings(num_threads))
        runner()


def _log_stop_reason(callback: Any) -> Any:
    """A ``teardown`` for scvi-tools' early stopping that logs why training stopped (it prints it)."""

    def teardown(*args: Any, **kwargs: Any) -> None:
        if callback.early_stopping_reason is not None:
            logger.info("early stopping: %s", callback.early_stopping_reason.strip())

    return teardown


_SMALL_CATEGORY = re.compile(r"Category (-?\d+) in adata\.obs\['(\w+)'\] has fewer than 3 cells")


def register_fields(manager: Any, adata: Any, **kwargs: Any) -> None:
    """Register ``manager``'s fields on ``adata``, with scvi-tools' warnings in the user's names.

    scvi-tools warns about a category with fewer than 3 cells by its internal code and column
    (``Category 3 in adata.obs['_scvi_labels']``); the warning is re-issued with the user's column and
    category name. Other warnings pass unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager.register_fields(adata, **kwargs)
    for record in caught:
        match = _SMALL_CATEGORY.search(str(record.message))
        registry = _registry_of_column(manager, match.group(2)) if match else None
        if match is None or registry is None:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
            continue
        state = manager.get_state_registry(registry)
        mapping = list(state.categorical_mapping)
        code = int(match.group(1))
        name = mapping[code] if 0 <= code < len(mapping) else code
        warnings.warn(
            f"{name!r} in .obs[{state.original_key!r}] has fewer than 3 cells; the model may not learn it. "
            "Merge or drop such small groups if this matters.",
            UserWarning,
            stacklevel=3,
        )


def _registry_of_column(manager: Any, column: str) -> str | None:
    """The registry key of the field that wrote scvi-tools' internal ``.obs`` column ``column``."""
    for field in getattr(manager, "fields", ()):
        if getattr(field, "attr_key", None) == column:
            return field.registry_key
    return None
