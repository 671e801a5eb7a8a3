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
from asdkit.figures.registry import draw  # noqa: E402
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
    assert uses["asd_fig03"]["ASD"] == uses["asd_fig14"]["ASD | badnets"] == uses["asd_fig17"]["ASD | badnets"]  # one record
    assert uses["asd_fig05"]["ASD badnets"] == uses["asd_fig03"]["ASD"]
    # clean-hard samples come from one no-defense reference on ASD's and DBD's training images (002 Section 5.2)
    assert uses["asd_fig03"]["no defense"] == uses["asd_fig04"]["no defense"] == uses["asd_fig05"]["no defense badnets"]
    ref, asd, dbd = (runs[uses["asd_fig05"][k]] for k in ("no defense badnets", "ASD badnets", "DBD badnets 0"))
    assert ref.defense == "none" and (ref.train_size, ref.test_size) == (asd.train_size, asd.test_size) == (dbd.train_size, dbd.test_size)
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


@pytest.fixture(scope="module")
def drawn_figures(smoke_records):
    """Every figure drawn from the smoke stand-ins, judged, and rendered: key -> (Drawn, pixels below the title) or a skip reason."""
    import hashlib

    import matplotlib.pyplot as plt
    import numpy as np

    from asdkit.style import theme

    root, recs = smoke_records
    theme()
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        from asdkit.attacks import ATTACKS

        # the prepared attacks read a built poison; the grid of the others needs none
        mp.setattr("asdkit.figures.dbd.GRID_ATTACKS", tuple(a for a in ATTACKS if ATTACKS[a].prepared is None))
        forbid_training(mp)
        for key, fig in FIGURES.items():
            if key == "dbd_fig05":
                from asdkit.data import DataUnavailableError, second_dataset

                try:
                    second_dataset()
                except DataUnavailableError as exc:
                    out[key] = str(exc)
                    continue
            drawn = draw(fig, _stand_ins(fig, recs), "smoke")
            pixels = None
            if drawn.figure is not None:
                drawn.figure.suptitle("")  # what is below the title
                drawn.figure.canvas.draw()
                pixels = hashlib.sha256(np.asarray(drawn.figure.canvas.buffer_rgba()).tobytes()).hexdigest()
                plt.close(drawn.figure)
            out[key] = (drawn, pixels)
    return out


@pytest.mark.parametrize("key", sorted(FIGURES))
def test_every_drawing_function_draws_from_smoke_records(key, drawn_figures):
    fig = FIGURES[key]
    if isinstance(drawn_figures[key], str):
        pytest.skip(drawn_figures[key])
    drawn, pixels = drawn_figures[key]
    if fig.kind == "table":
        rows = drawn.values["markdown"]
        assert rows[0].startswith("| ") and len(rows) >= 3 and re.search(r"\d", drawn.number)
    else:
        assert drawn.figure.axes and drawn.number.strip() and pixels
    assert drawn.shows in (True, False, None) and (drawn.shows is None) == (fig.verdict is None)
    assert all(c.claim and c.measured for c in drawn.checks)
    if fig.needs("smoke"):  # a figure read off records reports numbers, not only a drawing
        assert re.search(r"\d", drawn.number)


def test_no_two_figures_are_identical_below_their_titles(drawn_figures):
    pixels = {k: v[1] for k, v in drawn_figures.items() if not isinstance(v, str) and v[1] is not None}
    assert len(pixels) >= 28
    same = [(a, b) for a in pixels for b in pixels if a < b and pixels[a] == pixels[b]]
    assert not same


def test_every_figure_has_one_of_the_two_house_widths(drawn_figures):
    from asdkit.style import FULL, SINGLE

    widths = {k: round(v[0].figure.get_figwidth(), 2) for k, v in drawn_figures.items() if not isinstance(v, str) and v[0].figure is not None}
    assert set(widths.values()) <= {SINGLE, FULL}, widths
    assert {SINGLE, FULL} <= set(widths.values())


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
    assert out["trained"] == 0 and out["runs"] == 3  # ASD and its no-defense reference, PIPD
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


def test_the_committed_verdicts_and_pages_are_computed_from_the_committed_numbers():
    from asdkit.figures.readme import render_notes, render_readme
    from asdkit.figures.registry import Drawn

    index = json.loads((ROOT / "figures" / "index.json").read_text())
    for key, entry in index["figures"].items():  # each verdict recomputed from the numbers it was decided on
        judged = FIGURES[key].judge(Drawn(None, "", entry["values"]))
        assert judged.shows == entry["shows"], key
        assert {c.claim: c.passed for c in judged.checks} == {c["claim"]: c["passed"] for c in entry["checks"]}, key  # JSON sorts keys
    order = [f.key for f in select()]
    assert (ROOT / "figures" / "README.md").read_text() == render_readme(index, order)  # never edited by hand
    assert (ROOT / "figures" / "NOTES.md").read_text() == render_notes(index, order)


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
