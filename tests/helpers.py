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


def ready_attack(name: str, shape, **options):
    """``make_attack(name, shape)``, and for a prepared attack a stand-in built state (random nets, random reflections, a random trigger within ε).

    The stand-ins test what every attack must do (poison counts, labels, determinism); the builds themselves are tested in test_prepared_attacks.py.
    """
    import torch

    from asdkit.attacks import make_attack

    attack = make_attack(name, shape, **options)
    g = torch.Generator().manual_seed(0)
    if name == "iab":
        torch.manual_seed(0)
        generator, mask = attack._new_nets()
        attack.load_state({"generator": generator.state_dict(), "mask": mask.state_dict()})
    elif name == "refool":
        attack.load_state({"reflections": torch.randint(0, 256, (8, *shape), generator=g, dtype=torch.uint8)})
    elif name.startswith("asd-adaptive"):
        attack.load_state({"pattern": (torch.rand(shape, generator=g) * 2 - 1) * attack.epsilon})
    return attack


class SleepJob:
    """A job for a launcher's worker that records its process id in ``marker`` and sleeps (a worker to orphan)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def to_dict(self) -> dict:
        return {"marker": self.marker}


def sleeping_worker(jobs: list[dict], root: str, threads: int = 0) -> list[dict]:
    import os
    import time
    from pathlib import Path

    Path(jobs[0]["marker"]).write_text(str(os.getpid()))
    time.sleep(120)
    return [{"state": "done"}]
