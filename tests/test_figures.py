"""The figure registry: every paper figure registered, each run planned once, every drawing function on real smoke records, no training when records exist."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from asdkit.config import config_hash, make_config  # noqa: E402
from asdkit.figures import FIGURES, TrainingForbidden, plan, regenerate, select  # noqa: E402
from asdkit.records import Record  # noqa: E402
from helpers import forbid_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER_FIGURES = {f"asd_fig{n:02d}" for n in range(1, 18)} | {f"pipd_fig{n:02d}" for n in range(1, 6)} | {f"dbd_fig{n:02d}" for n in range(1, 8)}
DEFENSES = ("none", "asd", "dbd", "pipd", "abl")


def test_the_registry_holds_the_29_figures_of_the_three_papers():
    assert {k for k, f in FIGURES.items() if f.kind == "figure"} == PAPER_FIGURES
    assert {k for k, f in FIGURES.items() if f.kind == "table"} >= {"asd_table2", "asd_table3"}
    assert [f.key for f in select()][:3] == ["asd_fig01", "asd_fig02", "asd_fig03"]
    assert all(f.caption and f.claim for f in FIGURES.values())


def test_the_plan_names_each_run_once_and_figures_that_read_one_run_share_it():
    runs, uses = plan(select(), "classroom")
    hashes = [config_hash(c) for c in runs.values()]
    assert len(hashes) == len(set(hashes))
    assert uses["asd_fig03"]["ASD"] == uses["asd_fig14"]["ASD"]  # Fig. 14 is Fig. 3 against BadNets: one record
    assert uses["asd_fig05"]["ASD badnets"] == uses["asd_fig03"]["ASD"]
    assert sum(len(u) for u in uses.values()) > len(runs) + 20
    assert runs[uses["asd_fig06"]["w/o stage 1 | badnets"]].defense_args["stages"] == "23"
    assert runs[uses["asd_fig06"]["w/o stage 1 | badnets"]].rate == 0.2
    smoke, _ = plan(select(), "smoke")
    assert len(smoke) < len(runs)  # the smoke grid is smaller, named in each figure's `reduced`


def test_an_unknown_figure_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"'only' field names unknown figures \['asd_fig99'\]"):
        select("asd_fig03,asd_fig99")


@pytest.fixture(scope="module")
def smoke_records(fmnist_dir, tmp_path_factory):
    """One finished smoke record per defense against BadNets (the configs the figures name at smoke scale)."""
    import torch

    from asdkit.planner import run

    root = tmp_path_factory.mktemp("figure-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setenv("ASDKIT_RUNS", str(root))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            recs = {d: Record.load(run(make_config("smoke", defense=d), root=root, quiet=True)["record"]) for d in DEFENSES}
        finally:
            torch.set_num_threads(threads)
    return root, recs


def _stand_ins(fig, recs: dict) -> dict:
    """Each run a figure names, stood in for by the smoke record of its defense (the drawing reads the same fields)."""
    return {label: recs[need.defense] for label, need in fig.needs("smoke").items()}


@pytest.mark.parametrize("key", sorted(FIGURES))
def test_every_drawing_function_draws_from_smoke_records(key, smoke_records, monkeypatch):
    root, recs = smoke_records
    fig = FIGURES[key]
    if key == "dbd_fig04":  # the prepared attacks read a built poison; the grid of the others needs none
        from asdkit.attacks import ATTACKS

        monkeypatch.setattr("asdkit.figures.dbd.GRID_ATTACKS", tuple(a for a in ATTACKS if ATTACKS[a].prepared is None))
    if key == "dbd_fig05":
        from asdkit.figures.dbd import _second_dataset

        try:
            _second_dataset()
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
    forbid_training(monkeypatch)
    drawn = fig.draw(_stand_ins(fig, recs), "smoke")
    if fig.kind == "table":
        rows = drawn.values["markdown"]
        assert rows[0].startswith("| ") and len(rows) >= 3 and re.search(r"\d", drawn.number)
        return
    assert drawn.figure.axes and drawn.number.strip()
    assert drawn.shows in (True, False, None)
    if fig.needs("smoke"):  # a figure read off records reports numbers, not only a drawing
        assert re.search(r"\d", drawn.number)
    drawn.figure.canvas.draw()  # the layout engine runs (overlaps would warn, not fail; the PNGs are looked at)
    import matplotlib.pyplot as plt

    plt.close(drawn.figure)


def test_figures_whose_records_exist_draw_without_training_and_the_readme_carries_their_numbers(smoke_records, monkeypatch, tmp_path):
    root, recs = smoke_records
    monkeypatch.setenv("ASDKIT_RUNS", str(root))
    only = "asd_fig02,asd_fig03,pipd_fig03,pipd_fig05"
    with pytest.raises(TrainingForbidden, match="no finished record"):  # PIPD with unlearning was never run
        regenerate("smoke", only=only, out=tmp_path / "out", root=root, train=False, quiet=True)
    assert not (tmp_path / "out").exists()
    only = "asd_fig02,asd_fig03,pipd_fig03"
    forbid_training(monkeypatch)
    out = regenerate("smoke", only=only, out=tmp_path / "out", root=root, train=False, quiet=True)
    assert out["trained"] == 0 and out["runs"] == 2
    readme = (tmp_path / "out" / "README.md").read_text()
    for key, res in out["figures"].items():
        assert (tmp_path / "out" / f"{key}.png").stat().st_size > 10_000
        assert f"[`{key}.png`]({key}.png)" in readme and res["number"].replace("|", "\\|") in readme
    assert out["figures"]["asd_fig02"]["shows"] is None
    from asdkit.records import machine

    machines = out["figures"]["asd_fig03"]["machines"]  # the records' processor (and threads), named in the README
    assert len(machines) == 1 and machines[0].startswith(machine("cpu").rsplit(", ", 1)[0] + ", ")
    assert f"- {machines[0]}: `asd_fig03`, `pipd_fig03`" in readme
    regenerate("smoke", only="asd_fig02", out=tmp_path / "out", root=root, train=False, quiet=True)  # one figure redrawn, the rows kept
    assert set(json.loads((tmp_path / "out" / "index.json").read_text())["figures"]) == set(only.split(","))


def test_the_committed_figures_and_their_readme_agree():
    index = json.loads((ROOT / "figures" / "index.json").read_text())
    readme = (ROOT / "figures" / "README.md").read_text()
    assert index["scale"] == "classroom" and index["figures"]
    for key, entry in index["figures"].items():
        assert key in FIGURES and (ROOT / "figures" / entry["file"]).exists()
        assert entry["number"].replace("|", "\\|") in readme or entry["number"] in readme  # table cells escape '|'
        assert entry["kind"] == "table" or f"[`{entry['file']}`]" in readme
        assert entry["shows"] is None or entry["number"] and re.search(r"\d", entry["number"])


def test_a_missing_data_set_stops_the_figures_before_any_run_trains(monkeypatch, tmp_path):
    import asdkit.data
    from asdkit.data import DataUnavailableError

    real = asdkit.data.load

    def load(name="fashion-mnist", **kw):
        if "cifar10" in str(name) or "gtsrb" in str(name):  # Refool's reflections, planted as missing (no network in tests)
            raise DataUnavailableError(f"{name} is not available (planted)")
        return real(name, **kw)

    monkeypatch.setattr(asdkit.data, "load", load)
    forbid_training(monkeypatch)
    with pytest.raises(DataUnavailableError, match="planted"):
        regenerate("smoke", only="dbd_fig04", out=tmp_path / "out", root=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("none-*"))


@pytest.mark.parametrize("scale", ["smoke", "classroom", "lab", "paper"])
def test_every_asd_run_of_the_figures_passes_asds_warm_up_check(scale):
    """A variant that ASD's own check refuses (its warm-up fills D_C before stage 1 ends) must not reach a batch of runs."""
    from dataclasses import replace
    from types import SimpleNamespace

    import torch

    from asdkit.config import defense_options, resolve_epochs
    from asdkit.defenses import asd

    runs, _ = plan(select(None), scale)
    checked = 0
    for name, cfg in runs.items():
        if cfg.defense != "asd":
            continue
        n = cfg.train_size or {"fashion-mnist": 60000, "cifar10": 50000}[str(cfg.dataset)]  # 10 classes each
        ctx = SimpleNamespace(options=defense_options(cfg), config=replace(cfg, epochs=resolve_epochs(cfg, n)), n=n,
                              num_classes=10, labels=torch.arange(n) % 10, model=SimpleNamespace(layer_groups=("a", "b", "c", "d")))
        asd.check(ctx)  # raises ValueError naming the warm-up
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_its_defense_refuses_stops_the_batch_before_any_run_trains(monkeypatch, tmp_path, jobs):
    """The pre-flight runs each defense's data-dependent check first: an ASD warm-up that fills D_C fails before the fine run trains."""
    from asdkit.figures.registry import train_missing

    fine = make_config("smoke", defense="none")
    refused = make_config("smoke", defense="asd", overrides={"epochs": 4, "defense.t1": 4, "defense.t2": 4, "defense.warmup_every": 1,
                                                             "defense.warmup_step": 200})
    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"asd / badnets at smoke \(seed 0\): ASD's warm-up .* whole training set"):
        train_missing({"fine": fine, "refused": refused}, root=tmp_path / "runs", quiet=True, jobs=jobs)
    assert not list((tmp_path / "runs").rglob("record.pt"))


def test_the_preflight_refuses_a_device_this_machine_lacks_before_any_run_trains(monkeypatch, tmp_path):
    """The pre-flight works on the CPU but checks the device each run asks for."""
    from asdkit.planner import preflight

    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"none / badnets at smoke \(seed 0\): --device cuda:99"):
        preflight([make_config("smoke", defense="none", overrides={"device": "cuda:99"})], tmp_path)
