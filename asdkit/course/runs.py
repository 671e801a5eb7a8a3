"""The course's runs: every record the notebooks read, by name, at any scale; ``asdkit course prepare`` trains them.

A notebook never trains in a cell of its own: it asks :func:`record` for a named run, which
loads the finished record (seconds) or runs it once (resumable, like every run). An
instructor runs ``asdkit course prepare`` the evening before, and the class starts warm. The
course only declares its runs (:data:`COURSE`); the planner (:mod:`asdkit.planner`) makes them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import planner
from ..config import SCALES, make_config
from ..records import Record, finished_record, run_folder

__all__ = ["CourseRun", "COURSE", "scale", "setup", "find_upward", "available", "config", "configs", "record", "prepare", "status"]


@dataclass(frozen=True)
class CourseRun:
    """One run the course needs: a defense, config overrides, and the notebooks that read it."""

    defense: str
    overrides: dict[str, Any] = field(default_factory=dict)
    notebooks: tuple[str, ...] = ()
    about: str = ""
    same_data_as: str = ""  # take train_size/test_size from this defense's preset (DBD's features vs a supervised model's)
    scale_up: dict[str, str] = field(default_factory=dict)  # course scale -> the scale this run uses instead (classroom -> lab)
    shared: str = ""  # a shared subset it trains on (``data.SHARED_SUBSETS``); absent, the run is left out unless named


ATTACKS = ("badnets", "blend", "wanet", "sig", "trojan")

COURSE: dict[str, CourseRun] = {
    **{f"none-{a}": CourseRun("none", {"attack": a}, ("01", "02", "07") if a == "badnets" else ("01", "07"),
                              f"no defense against {a}, 10 % poison") for a in ATTACKS},
    "clean": CourseRun("none", {"rate": 0.0}, ("01", "07"), "the clean twin: no poison, its ASR is the floor"),
    "abl-badnets": CourseRun("abl", {}, ("02", "07"), "ABL against BadNets"),
    "asd-badnets": CourseRun("asd", {}, ("03", "04", "07"), "ASD against BadNets"),
    "asd-badnets-lab": CourseRun("asd", {}, ("03",), "ASD against BadNets at the next scale up (classroom course: lab)",
                                 scale_up={"classroom": "lab"}),
    "pipd-badnets": CourseRun("pipd", {}, ("05", "07"), "PIPD against BadNets"),
    "pipd-unlearn-badnets": CourseRun("pipd", {"defense.operation": "unlearn"}, ("05",), "PIPD with ABL's unlearning instead of selective training"),
    "dbd-badnets": CourseRun("dbd", {}, ("06", "07"), "DBD against BadNets"),
    "dbd-meta-badnets": CourseRun("dbd", {"defense.split": "meta"}, ("06",), "DBD with ASD's meta-split as its fine-tuning split"),
    "dbd-ce-head-badnets": CourseRun("dbd", {"defense.head_loss": "ce", "defense.finetune_epochs": 1}, ("06",),
                                     "DBD's head trained with CE instead of SCE (004 Fig. 3; one fine-tuning epoch, the stage-2 losses are what is read)"),
    "none-badnets-dbd-data": CourseRun("none", {}, ("06",), "no defense on DBD's training set (the supervised backbone's features)",
                                       same_data_as="dbd"),
    "none-badnets-asd-data": CourseRun("none", {}, ("03",), "no defense on ASD's training set (ASD's accuracy against the same images)",
                                       same_data_as="asd"),
    "none-badnets-lab": CourseRun("none", {}, ("03",), "no defense on ASD's images at the next scale up (classroom course: lab)",
                                  same_data_as="asd", scale_up={"classroom": "lab"}),
    "asd-badnets-gtsrb": CourseRun("asd", {}, ("03",), "ASD against BadNets on the shared GTSRB subset (classroom course: lab)",
                                   scale_up={"classroom": "lab"}, shared="gtsrb-mini.npz"),
    "none-badnets-gtsrb": CourseRun("none", {}, ("03",), "no defense on ASD's GTSRB training images (classroom course: lab)",
                                    same_data_as="asd", scale_up={"classroom": "lab"}, shared="gtsrb-mini.npz"),
}


def scale(default: str = "classroom") -> str:
    """The course's scale: ``$ASDKIT_SCALE`` (smoke in CI), else ``default``."""
    value = os.environ.get("ASDKIT_SCALE", default)
    if value not in SCALES:
        raise ValueError(f"ASDKIT_SCALE must be one of {list(SCALES)}; got {value!r}.")
    return value


def find_upward(name: str, start: Path | str | None = None) -> Path | None:
    """The nearest folder called ``name`` in ``start`` (default the working directory) or any folder above it, else None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / name).is_dir():
            return folder / name
    return None


def setup(at: str | None = None, start: Path | str | None = None) -> str:
    """A notebook's first step: the scale (``at``, else ``$ASDKIT_SCALE``, else classroom) and where records and data are.

    ``$ASDKIT_RUNS`` and ``$ASDKIT_DATA`` win when set; else the nearest ``runs/`` and ``data/`` in the working
    directory or above it (so a student copy in ``student/`` reads the records ``asdkit course prepare`` made in
    the repository's ``runs/``); else beside the nearest ``pyproject.toml`` upward (else here), made on first use.
    Returns the line a notebook prints.
    """
    value = at or os.environ.get("ASDKIT_SCALE", "classroom")
    if value not in SCALES:
        raise ValueError(f"The course's scale must be one of {list(SCALES)}; got {value!r}.")
    os.environ["ASDKIT_SCALE"] = value
    said = []
    for var, name in (("ASDKIT_RUNS", "runs"), ("ASDKIT_DATA", "data")):
        if os.environ.get(var, "").strip():
            said.append(f"{name} in {Path(os.environ[var]).expanduser().resolve()} (${var})")
            continue
        found = find_upward(name, start)
        if found is not None:
            os.environ[var] = str(found)
            said.append(f"{name} in {found} (the nearest {name}/ folder upward)")
        else:  # none yet: beside the project (the nearest folder upward with a pyproject.toml), else here
            here = Path(start or Path.cwd()).resolve()
            project = next((f for f in (here, *here.parents) if (f / "pyproject.toml").is_file()), here)
            os.environ[var] = str(project / name)
            said.append(f"{name} in {project / name} (none found upward: made on first use)")
    from .._version import __version__

    return f"asdkit {__version__}; scale {os.environ['ASDKIT_SCALE']}; " + "; ".join(said)


def _spec(name: str) -> CourseRun:
    if name not in COURSE:
        raise ValueError(f"The course has no run {name!r}; its runs: {sorted(COURSE)}.")
    return COURSE[name]


def available(name: str) -> bool:
    """Whether course run ``name`` can be made here: its shared subset, if it names one, is in ``$ASDKIT_SHARED_DATA``."""
    from ..data import DataUnavailableError, shared_subset

    spec = _spec(name)
    try:
        return not spec.shared or shared_subset(spec.shared).is_file()
    except DataUnavailableError:
        return False


def config(name: str, at: str | None = None, **overrides: Any):
    """The :class:`~asdkit.config.RunConfig` of course run ``name`` at scale ``at`` (default :func:`scale`), plus ``overrides``."""
    spec, at = _spec(name), at or scale()
    at = spec.scale_up.get(at, at)
    values = dict(spec.overrides)
    if spec.shared:  # absent, the error says where it looked and which variable moves it
        from ..data import shared_subset

        values["dataset"] = str(shared_subset(spec.shared))
    if spec.same_data_as:
        other = make_config(at, defense=spec.same_data_as, overrides={k: v for k, v in values.items() if k == "dataset"})
        values.update(train_size=other.train_size, test_size=other.test_size)
    values.update(overrides)
    return make_config(at, defense=spec.defense, overrides=values)


def record(name: str, at: str | None = None, *, quiet: bool = True, **overrides: Any) -> Record:
    """The finished record of course run ``name``: loaded if it exists, else trained now (and kept)."""
    cfg = config(name, at, **overrides)
    rec = finished_record(cfg)
    if rec is None:
        rec = Record.load(planner.run(cfg, quiet=quiet)["record"])
    return rec


def configs(at: str | None = None, names: list[str] | None = None) -> dict[str, Any]:
    """The course's declared runs (or ``names``) at scale ``at``: name -> config, every name checked; unnamed, a run whose
    shared subset is absent here is left out (its notebook section says so)."""
    names = list(names) if names else [n for n in COURSE if available(n)]
    for n in names:
        _spec(n)
    return {n: config(n, at) for n in names}


def status(at: str | None = None) -> list[tuple[str, bool]]:
    """(name, finished?) of every course run at scale ``at`` (a corrupt record is not finished: ``asdkit course list`` says so)."""
    named = configs(at)
    return [(name, state == "done") for name, (_, state) in zip(named, planner.status(list(named.values())))]


def prepare(at: str | None = None, *, names: list[str] | None = None, quiet: bool = False, jobs: int = 1, launcher: str = "local",
            options: dict | None = None) -> list[dict[str, Any]]:
    """Make every course run (or ``names``) at scale ``at`` that is not finished yet; the summaries of all of them, by name."""
    named = configs(at or scale(), names)
    results = planner.launch(list(named.values()), jobs=jobs, launcher=launcher, options=options, quiet=quiet, keep_going=False)
    failed = [r for r in results if r["state"] == "failed"]
    if failed:
        raise planner.RunFailed(f"{len(failed)} course run(s) failed: " + "; ".join(f"{r['run']}: {r['error']}" for r in failed[:3]))
    planner.wait_for(list(named.values()))
    trained = {r["run"] for r in results if r["kind"] == "run" and r["state"] == "done"}
    out = []
    for n, c in named.items():  # every one is finished now: its record's summary
        summary = planner.train(c, quiet=True)
        out.append({"name": n, **summary, "reused": run_folder(c).name not in trained})
    return out
