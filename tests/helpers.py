"""Helpers the test modules import (``from helpers import ...``); fixtures live in conftest.py."""
from contextlib import contextmanager

import pytest


def forbid_training(monkeypatch) -> None:
    """Fail on any training step: the context's epoch and the one batch loop (supervised and semi-supervised)."""

    def boom(*args, **kwargs):
        pytest.fail("training started")

    monkeypatch.setattr("asdkit.context.train_epoch", boom)
    monkeypatch.setattr("asdkit.engine.train_steps", boom)
    monkeypatch.setattr("asdkit.semi.train_steps", boom)


@contextmanager
def dies_after_checkpoint(monkeypatch, n: int):
    """The run inside is killed (KeyboardInterrupt) right after its n-th checkpoint; yields the (phase, epoch) checkpointed so far.

    The kill is expected: the block must raise it. The real checkpoint is back afterwards.
    """
    from asdkit.runner import Run

    real, calls = Run._checkpoint, []

    def dying(self, phase, epoch):
        real(self, phase, epoch)
        calls.append((phase, epoch))
        if len(calls) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(Run, "_checkpoint", dying)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield calls
    finally:
        monkeypatch.setattr(Run, "_checkpoint", real)
