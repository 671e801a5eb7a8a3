"""Tests of the runner (and the planner that calls it) on tiny Fashion-MNIST runs: determinism, resume, reuse, the record, bad input."""
from __future__ import annotations

import re
import shutil
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
from helpers import forbid_training
import torch

import asdkit
import asdkit.context
from asdkit import make_config, run
from asdkit.attacks import PoisonedSet
from asdkit.config import config_hash, resolve_epochs
from asdkit.engine import Normalizer, score
from asdkit.losses import cross_entropy, sce_loss
from asdkit.models import make_model
from asdkit.records import Record, RecordError, load_checked, save_atomic
from asdkit.phases import lr_factor
from asdkit.records import run_folder
from asdkit.runner import Run

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN, TEST, EPOCHS = 600, 300, 3
CHECKPOINT_KEYS = {"phase", "epoch", "model", "optimizers", "schedulers", "state", "average", "seconds"}


def tiny(**overrides):
    return make_config("smoke", overrides={"train_size": TRAIN, "test_size": TEST, "epochs": EPOCHS, **overrides})


def count_training(monkeypatch) -> list[int]:
    """Count the supervised epochs the defense trains through its context (and still train)."""
    calls, real = [], asdkit.context.train_epoch

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(asdkit.context, "train_epoch", counting)
    return calls



def weights(folder):
    return load_checked(folder / "model.pt")


def assert_same_run(a: Record, b: Record, folder_a, folder_b) -> None:
    for name in ("acc", "asr", "loss", "phase", "phase_epoch"):
        assert a.metric(name) == b.metric(name), name
    assert a.epochs == b.epochs == EPOCHS
    for e in range(EPOCHS):
        assert torch.equal(a.epoch_array("train_loss", e), b.epoch_array("train_loss", e))
    wa, wb = weights(folder_a), weights(folder_b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def reference(fmnist_dir, tmp_path_factory, one_thread):
    """One uninterrupted 3-epoch run, shared by the tests that compare against it."""
    root = tmp_path_factory.mktemp("runs-a")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setenv("ASDKIT_RUNS", str(root))
        config = tiny()
        summary = run(config, quiet=True, force=True)
    folder = run_folder(config, root)
    return dict(config=config, summary=summary, folder=folder, record=Record.load(folder), root=root)


# --------------------------------------------------------------------------- determinism, resume, reuse


def test_two_runs_of_one_config_are_identical(reference, runs_env):
    summary = run(reference["config"], quiet=True, force=True)
    assert summary["record"] != str(reference["folder"])  # really another folder
    assert_same_run(reference["record"], Record.load(summary["record"]), reference["folder"], runs_env / reference["folder"].name)
    assert summary["acc"] == reference["summary"]["acc"] and summary["asr"] == reference["summary"]["asr"]


class Interrupted(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("where", ["after-checkpoint-1", "between-record-and-checkpoint-2"])
def test_an_interrupted_run_resumes_to_the_same_result(reference, runs_env, monkeypatch, where):
    real = Run._checkpoint

    def interrupt(self, phase, finished_epochs):
        assert phase == 0  # no defense: one phase, "train"
        if where == "after-checkpoint-1":
            real(self, phase, finished_epochs)
            if finished_epochs == 1:
                raise Interrupted
        else:  # the record holds epoch 2 but the checkpoint only epoch 1: a crash between the two files
            if finished_epochs == 2:
                raise Interrupted
            real(self, phase, finished_epochs)

    config = reference["config"]
    monkeypatch.setattr(Run, "_checkpoint", interrupt)
    calls = count_training(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(config, quiet=True)
    folder = runs_env / reference["folder"].name
    partial = Record.load(folder)
    assert partial.status == "running" and not (folder / "model.pt").exists()
    assert partial.epochs == (1 if where == "after-checkpoint-1" else 2)
    ckpt = load_checked(folder / "checkpoint.pt")
    assert set(ckpt) == CHECKPOINT_KEYS and (ckpt["phase"], ckpt["epoch"]) == (0, 1)
    assert len(calls) == partial.epochs

    monkeypatch.setattr(Run, "_checkpoint", real)
    calls.clear()
    summary = run(config, quiet=True)
    assert len(calls) == EPOCHS - 1, "the resumed run trains only the epochs after the checkpoint"
    assert "reused" not in summary and summary["epochs"] == EPOCHS and summary["phases"] == {"train": EPOCHS}
    assert_same_run(reference["record"], Record.load(folder), reference["folder"], folder)
    assert (summary["acc"], summary["asr"]) == (reference["summary"]["acc"], reference["summary"]["asr"])


def test_a_finished_run_is_reused_without_training(reference, monkeypatch):
    monkeypatch.setenv("ASDKIT_RUNS", str(reference["root"]))
    forbid_training(monkeypatch)
    summary = run(reference["config"], quiet=True)
    assert summary["reused"] is True
    assert {k: summary[k] for k in reference["summary"]} == reference["summary"]


def test_a_corrupt_record_in_the_run_folder_is_reported_not_trained_over(runs_env, monkeypatch):
    config = tiny()
    folder = runs_env / f"none-badnets-{asdkit.config.config_hash(config)}"
    folder.mkdir(parents=True)
    (folder / "record.pt").write_bytes(b"not a record")
    forbid_training(monkeypatch)
    with pytest.raises(RecordError, match="record.pt.*Delete"):
        run(config, quiet=True)


# --------------------------------------------------------------------------- what the record holds


def test_the_record_holds_ground_truth_losses_and_snapshots(reference):
    rec, config, folder = reference["record"], reference["config"], reference["folder"]
    assert rec.status == "done" and rec.config == config.to_dict()
    assert rec.code_version.startswith(asdkit.__version__)
    assert rec.summary == reference["summary"]
    assert 0 <= rec.summary["acc"] <= 1 and 0 <= rec.summary["asr"] <= 1
    assert rec.summary["epochs"] == EPOCHS and rec.summary["phases"] == {"train": EPOCHS}
    assert rec.summary["seconds_train"] >= 0 and rec.summary["seconds"] >= 0
    cpu, threads = rec.summary["machine"].rsplit(", ", 1)  # the processor the seconds were measured on
    assert cpu and re.fullmatch(r"\d+ threads?", threads)
    assert rec.metric("phase") == ["train"] * EPOCHS and rec.metric("phase_epoch") == list(range(EPOCHS))
    assert all(m["train_seconds"] <= m["seconds"] for m in rec.metrics)

    is_poison = rec.arrays["is_poison"]
    assert is_poison.dtype == torch.bool and len(is_poison) == TRAIN
    assert int(is_poison.sum()) == round(config.rate * TRAIN)
    observed, true = rec.arrays["observed_label"], rec.arrays["true_label"]
    assert torch.all(observed[is_poison] == config.target) and torch.all(true[is_poison] != config.target)
    assert torch.equal(observed[~is_poison], true[~is_poison])

    assert len(rec.epoch_arrays["train_loss"]) == EPOCHS
    for e in range(EPOCHS):
        losses = rec.epoch_array("train_loss", e)
        assert losses.shape == (TRAIN,) and torch.isfinite(losses).all() and (losses >= 0).all()
        assert float(losses.mean()) == pytest.approx(rec.metrics[e]["loss"], rel=2e-3)  # float16 storage
    assert rec.metric("loss")[-1] < rec.metric("loss")[0]

    final = rec.snapshots["final"]
    assert set(final) >= {"ce", "sce"} and final["ce"].shape == final["sce"].shape == (TRAIN,)
    # the snapshot is the per-sample loss of the saved final model on the poisoned training set
    run_obj = Run(config, root=reference["root"], quiet=True)
    model = make_model(config.model, num_classes=10, in_channels=1, **config.model_args)
    model.load_state_dict(weights(folder))
    truth = run_obj.truth
    norm = Normalizer(truth.data.mean, truth.data.std, torch.device("cpu"))
    assert torch.equal(truth.observed_label, observed) and torch.equal(truth.is_poison, is_poison)
    assert torch.equal(run_obj.ctx.labels, observed)  # the defense sees the observed labels...
    assert not any(isinstance(v, PoisonedSet) for v in vars(run_obj.ctx).values())  # ...and no ground truth
    for name, fn in (("ce", cross_entropy), ("sce", sce_loss)):
        expected = score(model, truth.data.x, observed, fn, normalize=norm)
        torch.testing.assert_close(final[name].float(), expected, rtol=2e-3, atol=2e-3)
    ckpt = load_checked(folder / "checkpoint.pt")
    assert set(ckpt) == CHECKPOINT_KEYS and (ckpt["phase"], ckpt["epoch"]) == (0, EPOCHS)
    assert set(ckpt["optimizers"]) == set(ckpt["schedulers"]) and len(ckpt["optimizers"]) == 1


def test_the_time_of_a_phase_is_the_sum_of_its_epochs(runs_env, monkeypatch):
    """002 Table 3 reads time per stage off the summary: seconds_<phase> = the phase's epochs' seconds, summed."""
    clock = [0.0]

    def perf_counter() -> float:  # a clock on which every epoch of this tiny run takes a few hundredths of a second
        clock[0] += 0.01
        return clock[0]

    monkeypatch.setattr("asdkit.runner.time", SimpleNamespace(perf_counter=perf_counter))
    config = tiny(train_size=200, test_size=100)
    summary = run(config, quiet=True)
    epochs = [m["seconds"] for m in Record.load(run_folder(config)).metrics]
    assert len(epochs) == EPOCHS and all(0 < t < 0.05 for t in epochs)
    assert summary["seconds_train"] == round(sum(epochs), 1) > 0


# --------------------------------------------------------------------------- a checkpoint that does not fit


def _interrupted_copy(reference, runs_env):
    """The reference run's folder, copied and marked unfinished: the next run() resumes from its checkpoint."""
    folder = runs_env / reference["folder"].name
    shutil.copytree(reference["folder"], folder)
    rec = Record.load(folder)
    rec.status = "running"
    rec.save()
    return folder


@pytest.mark.parametrize("damage", ["phase-out-of-range", "epoch-out-of-range", "other-optimizers", "old-format"])
def test_a_checkpoint_that_does_not_fit_the_phases_is_refused_without_training(reference, runs_env, monkeypatch, damage):
    folder = _interrupted_copy(reference, runs_env)
    ckpt = load_checked(folder / "checkpoint.pt")
    if damage == "phase-out-of-range":
        ckpt["phase"] = 1  # no defense plans a single phase, index 0
    elif damage == "epoch-out-of-range":
        ckpt["epoch"] = EPOCHS + 1
    elif damage == "other-optimizers":
        ckpt["optimizers"] = {"stages": next(iter(ckpt["optimizers"].values()))}
    else:  # a checkpoint of the single-optimiser layout before phases
        ckpt = {"epoch": 1, "model": ckpt["model"], "optimizer": {}, "scheduler": {}, "state": {}}
    save_atomic(ckpt, folder / "checkpoint.pt")
    forbid_training(monkeypatch)
    with pytest.raises(RecordError, match=r"checkpoint\.pt.*(?i:delete)"):
        run(reference["config"], quiet=True)


# --------------------------------------------------------------------------- bad input, before any training

BAD = [
    ("none", {"dataset": "no-such-set"}, "no-such-set"),
    ("none", {"attack": "nope"}, "'attack'"),
    ("none", {"attack": "iab", "attack.epochs": 0}, "option 'epochs' of attack 'iab'"),
    ("none", {"attack": "refool", "attack.colour": 1}, "colour"),
    ("none", {"attack.nope": 3}, "nope"),
    ("none", {"rate": -0.1}, "'rate'"),
    ("none", {"rate": 1.5}, "'rate'"),
    ("none", {"target": 10}, "'target'"),
    ("none", {"target": -1}, "'target'"),
    ("none", {"epochz": 3}, "epochz"),
    ("none", {"label_mode": "one2one"}, "'label_mode'"),
    ("none", {"device": "cuda"}, "CUDA"),
    ("none", {"device": "tpu"}, "'device'"),
    ("none", {"model": "lenet"}, "'model'"),
    ("none", {"epochs": -1}, "'epochs'"),
    ("none", {"budget": 0}, "'budget'"),
    ("none", {"momentum": 1.5}, "'momentum'"),
    ("none", {"defense.t1": 5}, "'t1'"),
    ("none", {"scale": "paper"}, "'scale'"),
    ("none", {"defense": "asd"}, "'defense'"),
    ("asd", {"defense.gamma": 1.5}, "'gamma'"),
    ("asd", {"defense.gama": 0.5}, "gama"),
    ("nope", {}, "'defense'"),
]


def _id(case) -> str:
    return case.id if hasattr(case, "id") else f"{case[0]}-{case[1]}"


@pytest.mark.parametrize("defense,overrides,match", BAD, ids=[_id(c) for c in BAD])
def test_bad_input_is_a_value_error_before_any_training(runs_env, monkeypatch, defense, overrides, match):
    if overrides.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=match):
        config = make_config("smoke", defense=defense, overrides={"train_size": 300, "test_size": 200, **overrides})
        run(config, quiet=True)
    assert not list(runs_env.rglob("*.pt")), "a rejected run wrote files"


# what make_config alone refuses: every field and defense option is checked before any data loads
BEFORE_DATA = [
    ("none", {"momentum": 1.5}, "The 'momentum' field must be a float in [0, 1). Got 1.5 instead."),
    ("none", {"rate": 1.5}, "The 'rate' field must be a float in [0, 1). Got 1.5 instead."),
    ("none", {"epochs": -1}, "The 'epochs' field must be an int in [0, inf). Got -1 instead."),
    ("none", {"budget": 0}, "The 'budget' field must be an int in [1, inf). Got 0 instead."),
    ("none", {"batch_size": True}, "The 'batch_size' field must be an int in [1, inf). Got True instead."),
    ("none", {"device": "tpu"}, "The 'device' field must be"),
    ("none", {"defense.t1": 5}, "Unknown defense option(s) ['t1'] for 'none'; it takes no options."),
    ("asd", {"defense.gamma": 1.5}, "The 'gamma' option of asd must be a float in (0, 1). Got 1.5 instead."),
    ("asd", {"defense.t1": "x"}, "The 't1' option of asd must be an int in [0, inf). Got 'x' instead."),
    ("asd", {"defense.gama": 0.5}, "Did you mean ['gamma']?"),
    ("none", {"scale": "paper"}, "The 'scale' field chooses the preset and cannot be overridden"),
    ("none", {"defense": "asd"}, "The 'defense' field chooses the preset and cannot be overridden"),
    ("none", {"attack": "nope"}, "The 'attack' field must be one of"),
    ("none", {"attack.nope": 3}, "'nope'"),
    ("none", {"model": "lenet"}, "The 'model' field must be one of"),
    ("none", {"epochz": 3}, "Unknown config field 'epochz'"),
]


@pytest.mark.parametrize("defense,overrides,message", BEFORE_DATA, ids=[f"{d}-{o}" for d, o, _ in BEFORE_DATA])
def test_make_config_refuses_bad_fields_and_options_before_any_data_loads(monkeypatch, defense, overrides, message):
    def no_data(*args, **kwargs):
        pytest.fail("data loaded")

    monkeypatch.setattr("asdkit.preparation.load", no_data)
    monkeypatch.setattr("asdkit.data.load", no_data)
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config("smoke", defense=defense, overrides=overrides)


def test_make_config_refuses_an_unknown_scale():
    with pytest.raises(ValueError, match="'scale'.*'huge'"):
        make_config("huge")


def test_make_config_stores_the_defenses_full_resolved_options():
    from asdkit.defenses.asd import OPTIONS

    assert make_config("smoke").defense_args == {}  # no defense: no options
    c = make_config("smoke", defense="asd", overrides={"defense.gamma": 0.25})
    assert c.defense_args == {**{o.name: o.default_at("smoke") for o in OPTIONS}, "gamma": 0.25}
    assert make_config("classroom", defense="asd").defense_args["t1"] == 6  # per-scale defaults


@pytest.mark.parametrize("model", ["resnet18", "mobilenet_v2"])
def test_every_model_can_be_chosen_at_smoke_scale(runs_env, model):
    """`asdkit run --scale smoke --model resnet18` must build the model or refuse with a ValueError, not a TypeError.

    The smoke preset sets model_args={"widths": [16, 32, 64]}, an option only the compact model takes.
    """
    try:
        config = make_config("smoke", overrides={"model": model, "train_size": 100, "test_size": 100})
    except ValueError as exc:
        assert "model" in str(exc)
        return
    r = Run(config, quiet=True)
    assert r.ctx.model.linear.out_features == 10


def test_a_forced_run_with_a_bad_device_keeps_the_finished_record(runs_env, monkeypatch):
    """--force must not delete a finished run's files before the new config has been checked.

    The device is not part of the record key, so a forced run with an unusable device maps to the same folder.
    """
    config = tiny(epochs=1, train_size=200, test_size=100)
    summary = run(config, quiet=True)
    folder = runs_env / summary["record"].split("/")[-1]
    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match="'device'"):
        run(replace(config, device="tpu"), quiet=True, force=True)
    assert (folder / "record.pt").exists() and (folder / "model.pt").exists(), "the finished record was deleted"
    assert Record.load(folder).status == "done"


# --------------------------------------------------------------------------- epochs from the budget


def test_epochs_zero_trains_what_the_budget_buys():
    smoke = make_config("smoke", overrides={"train_size": TRAIN})
    assert (smoke.epochs, smoke.budget) == (0, 4000)
    assert resolve_epochs(smoke, TRAIN) == round(4000 / TRAIN) == 7
    assert resolve_epochs(smoke, 2000) == 2 and resolve_epochs(smoke, 10**6) == 1  # at least one epoch
    assert resolve_epochs(replace(smoke, epochs=3), TRAIN) == 3  # a set 'epochs' wins
    classroom = make_config("classroom")
    assert (classroom.epochs, classroom.budget) == (0, 180_000) and resolve_epochs(classroom, 60_000) == 3
    assert resolve_epochs(make_config("smoke", overrides={"budget": 1500}), 1000) == 2  # round(1.5) = 2


def test_the_smoke_scale_plans_round_budget_over_n_epochs(runs_env):
    r = Run(make_config("smoke", overrides={"train_size": TRAIN, "test_size": TEST}), quiet=True)
    steps = -(-TRAIN // r.config.batch_size)
    assert r.ctx.epochs == 7
    assert [(p.name, p.epochs, p.steps) for p in r.phases] == [("train", 7, steps)]


# --------------------------------------------------------------------------- progress bar


@pytest.mark.parametrize("tty", [False, True])
def test_the_progress_bar_counts_steps_left_and_is_throttled_off_a_terminal(runs_env, monkeypatch, tty):
    r = Run(tiny(), quiet=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    steps = -(-TRAIN // r.config.batch_size)
    for start, left in ((0, EPOCHS), (1, EPOCHS - 1)):
        bar = r._progress(0, start)
        try:
            assert bar.total == left * steps
            assert bar.mininterval == (0.1 if tty else 30.0)
        finally:
            bar.close()
    assert Run(tiny(), quiet=True)._progress(0, 0) is None


# --------------------------------------------------------------------------- learning-rate schedule


def test_lr_factor_onecycle_rises_linearly_to_20_percent_then_falls_to_zero():
    epochs = 10
    assert lr_factor("onecycle", 0.0, epochs) == 0.0
    assert lr_factor("onecycle", 1.0, epochs) == pytest.approx(0.5)
    assert lr_factor("onecycle", 2.0, epochs) == pytest.approx(1.0)
    assert lr_factor("onecycle", 6.0, epochs) == pytest.approx(0.5)
    assert lr_factor("onecycle", 10.0, epochs) == pytest.approx(0.0)
    ts = [i / 10 for i in range(101)]
    values = [lr_factor("onecycle", t, epochs) for t in ts]
    assert max(values) == pytest.approx(1.0) and min(values) >= 0.0


def test_lr_factor_multistep_and_constant():
    assert [lr_factor("multistep", t, 200, (100, 150)) for t in (0, 99.9, 100, 149, 150, 199)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor("constant", 5.0, 10) == 1.0


def test_lr_factor_lives_in_phases_and_is_reexported_by_the_runner():
    from asdkit.phases import lr_factor as phases_lr_factor

    assert lr_factor is phases_lr_factor


def test_resolution_resizes_the_images_before_poisoning(runs_env):
    """--set resolution=N reaches the loader: a 28×28 set trains at 32×32, and the BadNets patch is sized for 32."""
    r = Run(tiny(resolution=32), quiet=True)
    assert r.truth.data.shape == (1, 32, 32) and tuple(r.ctx.data.x.shape[1:]) == (1, 32, 32)
    assert tuple(r.ctx.evaluator.x.shape[1:]) == (1, 32, 32) and tuple(r.ctx.evaluator.asr_x.shape[1:]) == (1, 32, 32)
    assert r.attack.size == 2  # 2×2 at 32×32 (002 B.2), not 3×3 as at 28×28
    with pytest.raises(ValueError, match="resolution"):
        make_config("smoke", overrides={"resolution": -1})


def test_rate_zero_runs_the_clean_twin_whose_asr_is_the_floor(runs_env):
    """--rate 0 trains on clean data: nothing poisoned in the record, and ASR is still measured on triggered test images."""
    config = tiny(rate=0)
    summary = run(config, quiet=True)
    rec = Record.load(run_folder(config))
    assert int(rec.arrays["is_poison"].sum()) == 0
    assert torch.equal(rec.arrays["observed_label"], rec.arrays["true_label"])
    assert 0 <= summary["asr"] < 0.5  # a model that never saw the trigger rarely maps it to the target
    assert config_hash(config) != config_hash(tiny())


def test_a_bare_cpu_name_gets_its_family_and_model_so_two_generations_stay_apart():
    """Runs repeat on one CPU model only: "AMD EPYC" alone named a Zen 3 and a Zen 4 machine in these records."""
    from asdkit.records import cpu_name

    block = "processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: {f}\nmodel\t\t: {m}\nmodel name\t: {name}\n\n"
    two = lambda f, m, name: block.format(i=0, f=f, m=m, name=name) + block.format(i=1, f=99, m=99, name="other")  # noqa: E731
    assert cpu_name(two(25, 1, "AMD EPYC")) == "AMD EPYC (family 25, model 1)"
    assert cpu_name(two(25, 17, "AMD EPYC")) == "AMD EPYC (family 25, model 17)"
    named = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert cpu_name(two(6, 106, named)) == named  # a name with its model number stays as it is
    assert cpu_name("") == ""
