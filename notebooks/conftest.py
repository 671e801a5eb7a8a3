"""The notebooks under nbval (``pytest --nbval-lax notebooks``): smoke scale, records in one temporary folder shared by all.

The notebooks run in file order on one worker, so a record trained by an early notebook
(the no-defense run, ASD, ...) is reused by the later ones, as in class.
"""
import os
import tempfile

os.environ.setdefault("ASDKIT_SCALE", "smoke")
if "ASDKIT_NOTEBOOK_RUNS" not in os.environ:
    os.environ["ASDKIT_NOTEBOOK_RUNS"] = tempfile.mkdtemp(prefix="asdkit-notebooks-")
os.environ["ASDKIT_RUNS"] = os.environ["ASDKIT_NOTEBOOK_RUNS"]
os.environ.setdefault("ASDKIT_FIGURES", os.path.join(os.environ["ASDKIT_NOTEBOOK_RUNS"], "figures"))
os.environ.setdefault("MPLBACKEND", "Agg")
