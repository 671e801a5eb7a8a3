"""asdkit: training-time backdoor defenses (ASD, PIPD, DBD, ABL) for teaching, exploring and reproducing.

The layers, bottom to top, each importing only those below it: ``data`` → ``attacks`` →
``models`` → ``engine`` (the one batch loop) → ``losses``/``semi``/``ssl`` → ``phases`` →
``defenses`` → ``config`` → ``records`` → ``context`` → ``preparation``/``observers``/``runner``
→ ``planner`` → ``figures``/``course``/``sweep`` → ``cli``. A defense is a short schedule of
phases declared as data, run by the runner with a context that holds no ground truth;
ARCHITECTURE.md explains the phase model and where a new defense, pool operation, attack or
figure goes, with a twenty-line toy defense. Start with
``asdkit.run(asdkit.make_config("classroom"))`` or ``asdkit run --help``.
"""
import os as _os

# OpenMP threads that spin while they wait make a 2-thread run 13x slower when the other core is busy (a second run, a
# notebook kernel): passive waiting costs ~17 % on an idle 2-core CPU and removes that (benchmarks/omp_wait.py). It only
# takes effect if torch was not imported before asdkit; OMP_WAIT_POLICY=ACTIVE restores spinning.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402
from .config import RunConfig, make_config  # noqa: E402
from .context import Context  # noqa: E402
from .phases import Optim, Phase  # noqa: E402
from .records import Record, RecordError  # noqa: E402
from .planner import run, run_seeds  # noqa: E402
from .runner import Run  # noqa: E402

__all__ = ["RunConfig", "make_config", "Context", "Optim", "Phase", "Record", "RecordError", "Run", "run", "run_seeds", "__version__"]
