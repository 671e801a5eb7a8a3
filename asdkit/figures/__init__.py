"""The papers' figures: a registry of every figure, the runs it reads, and a pure drawing function.

``asdkit figures`` (or :func:`regenerate`) trains the runs that are missing, each once however
many figures read it, then draws ``figures/<paper>_figNN.png`` and ``figures/README.md``.
"""
from . import asd, dbd, diagrams, pipd, tables  # noqa: F401  (registration)
from .registry import FIGURES, Drawn, Need, PaperFigure, TrainingForbidden, missing, plan, regenerate, select

__all__ = ["FIGURES", "Drawn", "Need", "PaperFigure", "TrainingForbidden", "missing", "plan", "regenerate", "select"]
