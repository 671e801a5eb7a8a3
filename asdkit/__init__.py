"""asdkit: training-time backdoor defenses (ASD, PIPD, DBD, ABL) for teaching, exploring and reproducing.

The layers, top to bottom: ``data`` → ``attacks`` → ``models`` → ``engine`` → ``losses`` →
``defenses`` → ``records`` → ``plots``/``figures`` → ``cli``. Start with
``asdkit.run(asdkit.make_config("classroom"))`` or ``asdkit run --help``.
"""
__version__ = "0.1.0"

from .config import RunConfig, make_config  # noqa: E402
from .records import Record, RecordError  # noqa: E402
from .runner import Run, run  # noqa: E402

__all__ = ["RunConfig", "make_config", "Record", "RecordError", "Run", "run", "__version__"]
