"""Results from records: DER as BackdoorBench defines it, one CSV row per run, pages rendered from the CSV alone and byte for byte."""
from __future__ import annotations

from pathlib import Path

import pytest

from asdkit import results
from asdkit.results.pages import README_MARKERS, headline, read_csv, render, with_headline, write_csv_text
from asdkit.results.rows import COLUMNS
from asdkit.results.sets import ResultSet, _grid

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("acc, asr, ref_acc, ref_asr, expected", [
    (0.90, 0.00, 0.90, 1.00, 1.0),  # the whole backdoor removed at no cost
    (0.90, 1.00, 0.90, 1.00, 0.5),  # nothing gained, nothing lost
    (0.80, 0.02, 0.90, 0.98, (0.96 - 0.10 + 1) / 2),  # 96 points of ASR removed at 10 points of accuracy
    (0.95, 0.50, 0.90, 0.40, 0.5),  # ASR up and ACC up: both clipped at 0
    (0.50, 1.00, 0.90, 1.00, 0.3),  # only an accuracy cost: it is subtracted, not added (BackdoorBench's utils/metric.py adds it)
])
def test_der_is_backdoorbenchs_definition_on_hand_made_rows(acc, asr, ref_acc, ref_asr, expected):
    assert results.der(acc, asr, ref_acc, ref_asr) == pytest.approx(expected)


def test_the_declared_sets_are_the_issues_and_each_run_has_a_reference_on_the_same_images():
    plan = results.plan(results.select())
    assert len(plan["classroom"]) == 5 * 11 * 3 and len(plan["no-poison"]) == 5 * 3
    for c, ref in plan["classroom"] + plan["lab"]:
        if c.defense == "none":
            assert ref is None
            continue
        assert ref.defense == "none" and (ref.train_size, ref.test_size, ref.seed, ref.attack, ref.rate, ref.attack_args) == (
            c.train_size, c.test_size, c.seed, c.attack, c.rate, c.attack_args)
    assert {c.rate for c, _ in plan["no-poison"]} == {0.0}
    with pytest.raises(ValueError, match=r"unknown result sets \['nope'\]"):
        results.select("lab,nope")


@pytest.fixture(scope="module")
def smoke_results(fmnist_dir, tmp_path_factory):
    """A smoke result set of no defense and PIPD against BadNets, seeds 0-1, trained once, built into a results folder."""
    import torch

    from asdkit.planner import launch

    tmp = tmp_path_factory.mktemp("results")
    root, out = tmp / "runs", tmp / "results"
    readme = tmp / "README.md"
    readme.write_text(f"# x\n\n{README_MARKERS[0]}\nold\n{README_MARKERS[1]}\n\nmore\n")
    smoke = ResultSet("classroom", results.SETS["classroom"].about, lambda: _grid("smoke", ("none", "pipd"), ("badnets",), seeds=(0, 1)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setenv("ASDKIT_RUNS", str(root))
        mp.setitem(results.SETS, "classroom", smoke)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            launch(results.configs("classroom"), root=root, quiet=True)
            first = results.build("classroom", root=root, out=out, readme=readme)
            again = results.build("classroom", root=root, out=out, readme=readme)
        finally:
            torch.set_num_threads(threads)
    return out, readme, first, again


def test_a_build_writes_a_row_per_run_with_der_against_its_reference(smoke_results):
    out, _, first, again = smoke_results
    rows = read_csv(out / "results.csv")
    assert first["rows"] == len(rows) == 4 and again == {**first, "read": 4, "kept": 0}
    assert list(rows[0]) == list(COLUMNS)
    from asdkit.records import Record, run_folder

    pipd = [r for r in rows if r["defense"] == "pipd"]
    none = [r for r in rows if r["defense"] == "none"]
    for r in pipd:  # its reference: no defense on PIPD's own images (10,000 at smoke, where the set's no-defense runs have 2,000)
        c = _grid("smoke", ("pipd",), ("badnets",), seeds=(int(r["seed"]),))[0]
        ref = Record.load(run_folder(results.reference(c), out.parent / "runs") / "record.pt")
        assert r["reference"] == ref.path.parent.name and float(r["reference_asr"]) == ref.summary["asr"]
        assert len(ref.arrays["is_poison"]) == int(r["train_size"]) != int(none[0]["train_size"])
        assert float(r["der"]) == pytest.approx(results.der(float(r["acc"]), float(r["asr"]), ref.summary["acc"], ref.summary["asr"]))
        assert r["tpr"] and r["fpr"] and 0.0 <= float(r["auroc"]) <= 1.0 and r["machine"] and r["threads"] == "1"
        rec = Record.load(run_folder(c, out.parent / "runs") / "record.pt")
        p_p = rec.epoch_array("p_p", rec.logged_epochs("p_p")[0])
        assert float(r["p_p_poison"]) == pytest.approx(float(rec.arrays["is_poison"][p_p].float().mean()))
    assert all(r["der"] == "" and r["reference"] == "" and r["p_p_poison"] == "" for r in none)


def test_the_pages_are_rendered_from_the_csv_alone_byte_for_byte(smoke_results):
    out, readme, _, _ = smoke_results
    rows = read_csv(out / "results.csv")
    assert (out / "results.csv").read_text() == write_csv_text(rows)
    pages = render(rows)
    assert set(pages) == {"README.md", "classroom.md"}
    for name, text in pages.items():
        assert (out / name).read_text() == text
    page = pages["classroom.md"]
    assert "| BadNets | 10 % | PIPD | 0-1 |" in page and "Machines: " in page and page.count("Machines: ") == 1
    text = readme.read_text()
    assert headline(rows) in text and text.endswith("\n\nmore\n") and "old" not in text
    before = {p: p.read_bytes() for p in out.iterdir()}
    results.render_files(out, readme)
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_a_seed_whose_asr_means_nothing_is_flagged_with_why():
    row = {k: "" for k in COLUMNS}
    base = {**row, "set": "classroom", "attack": "badnets", "rate": "0.1", "defense": "asd", "acc": "0.8", "asr": "0.02", "seed": "0",
            "asr_meaningful": "true", "lowest_class": "Shirt", "lowest_class_acc": "0.4", "minutes": "3.0"}
    starved = {**base, "seed": "1", "asr": "0.0", "asr_meaningful": "false", "asr_caveat": "the target class itself is at 12% test accuracy"}
    page = render([base, starved])["classroom.md"]
    assert "† (seed 1: the target class itself is at 12% test accuracy)" in page
    assert "| 80.0 | 1.0 (0.0-2.0) †" in page
    assert with_headline("no markers here", [base]) == "no markers here"


def _asd(seed, acc, asr, low, ref_acc=0.9, scale="lab", attack="badnets"):
    return {**{k: "" for k in COLUMNS}, "set": "lab", "scale": scale, "attack": attack, "rate": "0.1", "defense": "asd", "seed": str(seed),
            "dataset": "/somewhere/gtsrb-mini.npz", "acc": str(acc), "asr": str(asr), "asr_meaningful": "true", "lowest_class": "Stop",
            "lowest_class_acc": str(low), "reference_acc": str(ref_acc), "minutes": "1.0"}


@pytest.mark.parametrize("rows, holds, crossed", [
    ([_asd(0, 0.88, 0.01, 0.6), _asd(1, 0.87, 0.02, 0.7), _asd(2, 0.80, 0.03, 0.55)], True, ""),  # the median is 2 points under
    ([_asd(0, 0.86, 0.01, 0.6), _asd(1, 0.85, 0.02, 0.7), _asd(2, 0.89, 0.03, 0.55)], False, "ACC"),  # 4 points under
    ([_asd(0, 0.88, 0.01, 0.6), _asd(1, 0.88, 0.05, 0.7), _asd(2, 0.88, 0.04, 0.55)], False, "ASR"),
    ([_asd(0, 0.88, 0.01, 0.6), _asd(1, 0.88, 0.01, 0.7), _asd(2, 0.88, 0.01, 0.45)], False, "lowest class"),
])
def test_asds_accuracy_claim_is_judged_against_the_reference_on_the_same_images(rows, holds, crossed):
    from asdkit.results.pages import asd_claim

    lines = [line for line in asd_claim(rows) if line.startswith("- ")]
    assert len(lines) == 1 and ("**holds**" in lines[0]) == holds
    failed = [part.strip() for part in lines[0].split(":", 2)[2].split(";") if "✗" in part]
    assert [part.split()[0] for part in failed] == ([] if holds else [crossed.split()[0]])
    assert "(seed 2)" in lines[0] and "3 seeds" in lines[0]


def test_the_readme_headline_judges_asds_claim_per_set_with_a_link_to_each_page():
    """One table row per set and attack, after the classroom table: the verdict, each check's ✓ or ✗, the data named."""
    gtsrb = [{**_asd(s, 0.90, 0.01, 0.6), "set": "gtsrb-lab"} for s in range(3)]
    fmnist = [{**_asd(s, 0.80, 0.05, 0.3), "set": "lab", "dataset": "fashion-mnist"} for s in range(2)]
    text = headline(gtsrb + fmnist)
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert rows == ["| [lab](results/lab.md) | Fashion-MNIST | lab | BadNets 10 % | 2 | does not hold | -10.0 points ✗ | 5.0 % ✗ | Stop 30.0 % ✗ |",
                    "| [gtsrb-lab](results/gtsrb-lab.md) | a GTSRB subset | lab | BadNets 10 % | 3 | **holds** | +0.0 points ✓ | 1.0 % ✓ | Stop 60.0 % ✓ |"]
    assert "ASD's accuracy claim" not in headline([{**r, "defense": "none"} for r in gtsrb])  # no ASD row, no table


def test_a_set_over_two_scales_has_a_scale_column_and_names_its_data_once():
    rows = [_asd(0, 0.88, 0.01, 0.6, scale="classroom"), _asd(0, 0.85, 0.01, 0.6, scale="lab")]
    page = render(rows)["lab.md"]
    assert "| scale | attack |" in page and "| classroom | BadNets |" in page and "| lab | BadNets |" in page
    assert page.index("| classroom | BadNets |") < page.index("| lab | BadNets |")
    assert page.count("a GTSRB subset (gtsrb-mini.npz)") == 1
    assert "poison in P_p" not in page and "poison in P_p" in render([{**rows[0], "p_p_poison": "0.5"}])["lab.md"]


def test_the_committed_results_are_rendered_from_the_committed_csv():
    csv = ROOT / "results" / "results.csv"
    if not csv.exists():
        pytest.skip("no committed results yet")
    rows = read_csv(csv)
    assert csv.read_text() == write_csv_text(rows)
    for name, text in render(rows).items():
        assert (ROOT / "results" / name).read_text() == text
    readme = (ROOT / "README.md").read_text()
    assert with_headline(readme, rows) == readme


def test_a_variant_of_a_preset_is_its_own_line_and_names_what_it_changes():
    from asdkit.config import make_config
    from asdkit.results.rows import variant

    assert variant(make_config("classroom", defense="pipd", overrides={"attack": "blend", "seed": 2, "rate": 0.2})) == ""
    assert variant(make_config("classroom", defense="pipd", overrides={"defense.pooling": "mean", "epochs": 10})) == "epochs=10, pooling=mean"
    preset, mean = _asd(0, 0.8, 0.01, 0.6), {**_asd(0, 0.7, 0.5, 0.6), "variant": "pooling=mean"}
    page = render([preset, mean])["lab.md"]
    assert "| BadNets | 10 % | ASD | 0 | 80.0 |" in page and "| BadNets | 10 % | ASD (pooling=mean) | 0 | 70.0 |" in page
    assert len([line for line in asd_claim_lines([preset, mean]) if line.startswith("- ")]) == 1  # a claim is judged on the preset


def asd_claim_lines(rows):
    from asdkit.results.pages import asd_claim

    return asd_claim(rows)


def test_a_set_whose_shared_data_is_absent_is_left_out_unless_named_and_its_rows_are_kept(tmp_path, monkeypatch):
    from asdkit.data import DataUnavailableError

    monkeypatch.setenv("ASDKIT_SHARED_DATA", str(tmp_path / "nothing-here"))
    assert "gtsrb-lab" not in [s.name for s in results.select()] and "classroom" in [s.name for s in results.select()]
    with pytest.raises(DataUnavailableError, match="gtsrb-mini.npz is not in .*ASDKIT_SHARED_DATA"):
        results.plan(results.select("gtsrb-lab"))
    out = tmp_path / "results"
    out.mkdir()
    row = {**_asd(0, 0.9, 0.01, 0.6), "set": "gtsrb-lab", "run": "asd-badnets-000000000000"}
    (out / "results.csv").write_text(write_csv_text([row]))
    built = results.build("no-poison", root=tmp_path / "runs", out=out, readme=None)
    assert built["kept"] == 1 and read_csv(out / "results.csv")[0]["run"] == "asd-badnets-000000000000"


def test_the_no_poison_control_shows_the_share_of_clean_samples_set_apart_and_no_tpr():
    row = {**{k: "" for k in COLUMNS}, "set": "no-poison", "attack": "badnets", "rate": "0.0", "defense": "pipd", "seed": "0",
           "scale": "classroom", "dataset": "fashion-mnist", "acc": "0.9", "asr": "0.01", "asr_meaningful": "true", "fpr": "0.02",
           "lowest_class": "Shirt", "lowest_class_acc": "0.6", "minutes": "2"}
    assert "| BadNets | 0 % | PIPD | 0 | 90.0 | 1.0 | — | — / 2.0 |" in render([row])["no-poison.md"]


def test_the_csv_names_the_shared_subsets_folder_not_this_machines_path(tmp_path, monkeypatch):
    from asdkit.results.rows import _cell

    monkeypatch.setenv("ASDKIT_SHARED_DATA", str(tmp_path / "shared"))
    assert _cell(str(tmp_path / "shared" / "gtsrb-mini.npz")) == "$ASDKIT_SHARED_DATA/gtsrb-mini.npz"
    assert _cell({"reflections": str(tmp_path / "shared" / "cifar10-mini.npz")}) == '{"reflections": "$ASDKIT_SHARED_DATA/cifar10-mini.npz"}'
    assert _cell("fashion-mnist") == "fashion-mnist" and _cell(0.5) == "0.5" and _cell(None) == ""
