"""Tests of the core every defense plugs into: one batch loop, declared options, phases that resume, trusted inputs."""
from __future__ import annotations

import gc
import re
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import asdkit
from helpers import dies_after_checkpoint
from asdkit import make_config
from asdkit.config import SCALES, config_fields, resolve_epochs, validate
from asdkit.defenses import DEFENSES
from asdkit.records import Record, load_checked
from asdkit.records import run_folder
from asdkit.runner import Run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- one batch loop


def _code(path: Path) -> str:
    """Source without comments and docstrings' prose mentions (a crude but sufficient strip: '#' to end of line)."""
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def test_the_package_has_exactly_one_batch_loop():
    """backward() and an optimiser step appear once in asdkit: in engine.train_steps; every defense steps through it."""
    hits = {"backward": [], "step": []}
    for path in sorted((ROOT / "asdkit").rglob("*.py")):
        code = _code(path)
        for m in re.finditer(r"\.backward\(", code):
            hits["backward"].append(path.name)
        for m in re.finditer(r"\b(optimizer|opt)\.step\(", code):
            hits["step"].append(path.name)
    assert hits == {"backward": ["engine.py"], "step": ["engine.py"]}
    src = (ROOT / "asdkit" / "engine.py").read_text()
    body = src[src.index("def train_steps"):src.index("def supervised")]
    assert ".backward(" in body and "optimizer.step(" in body


# --------------------------------------------------------------------------- declared options: the common bad-input test

_CANDIDATES = (-1, -0.5, 1.5, 10**12, "nonsense", True, None, [0.5, "x"], {"k": object()}, "")


def _bad_value(option):
    """The first candidate the option rejects (every option rejects at least one)."""
    for v in _CANDIDATES:
        try:
            ok = option.accepts(v)
        except Exception:  # noqa: BLE001 - a crash in the predicate would be a bug, caught below
            ok = False
        if not ok:
            return v
    raise AssertionError(f"option {option.name} accepts every candidate")


def _cases():
    cases = [("field", None, o) for o in config_fields()]
    cases += [("option", name, o) for name, spec in sorted(DEFENSES.items()) for o in spec.options]
    return cases


CASES = _cases()


def test_the_common_bad_input_test_covers_every_field_and_every_option():
    fields = {f.name for f in __import__("dataclasses").fields(asdkit.RunConfig)}
    assert {o.name for o in config_fields()} == fields
    asd_options = {o.name for o in DEFENSES["asd"].options}
    assert {o.name for kind, d, o in CASES if d == "asd"} == asd_options
    assert len(CASES) == len(fields) + sum(len(s.options) for s in DEFENSES.values())


@pytest.mark.parametrize("kind,defense,option", CASES, ids=[f"{d or 'config'}.{o.name}" for _, d, o in CASES])
def test_every_bad_value_is_refused_naming_field_range_and_value(kind, defense, option):
    bad = _bad_value(option)
    if kind == "option":
        with pytest.raises(ValueError) as err:
            make_config("smoke", defense=defense, overrides={f"defense.{option.name}": bad})
        owner = f"option of {defense}"
    elif option.name in ("scale", "defense", "attack_args", "defense_args"):  # not overridable: checked on a built config
        with pytest.raises(ValueError) as err:
            validate(replace(make_config("smoke"), **{option.name: bad}))
        owner = "field"
    else:
        with pytest.raises(ValueError) as err:
            make_config("smoke", overrides={option.name: bad})
        owner = "field"
    message = str(err.value)
    assert message == f"The {option.name!r} {owner} must be {option.want}. Got {bad!r} instead."


def test_every_declared_default_is_accepted_at_every_scale():
    for scale in SCALES:
        for name in DEFENSES:
            config = make_config(scale, defense=name)
            validate(config)


def test_the_dataclass_defaults_are_the_classroom_scale():
    config = asdkit.RunConfig()
    for o in config_fields():
        if o.name not in ("defense_args",):
            assert getattr(config, o.name) == o.default_at("classroom") or (o.name == "milestones" and config.milestones == ()), o.name


def test_an_option_the_defense_lacks_and_a_preset_field_as_override_are_refused():
    with pytest.raises(ValueError, match=r"Unknown defense option\(s\) \['t1'\] for 'none'; it takes no options"):
        make_config("classroom", overrides={"defense.t1": 5})
    with pytest.raises(ValueError, match=r"Did you mean \['gamma'\]"):
        make_config("classroom", defense="asd", overrides={"defense.gama": 0.4})
    for key, value in (("scale", "paper"), ("defense", "asd")):
        with pytest.raises(ValueError, match=f"The '{key}' field chooses the preset"):
            make_config("classroom", overrides={key: value})


def test_cross_field_checks_run_in_make_config():
    with pytest.raises(ValueError, match="t1 <= t2 <= epochs"):
        make_config("smoke", defense="asd", overrides={"defense.t1": 3, "defense.t2": 2})
    with pytest.raises(ValueError, match="'milestones' field must be epochs below 'epochs'"):
        make_config("smoke", overrides={"epochs": 5, "schedule": "multistep", "milestones": [2, 5]})
    with pytest.raises(ValueError, match="'meta_layers' option of asd must be 'auto' or an int in \\[1, 4\\]"):
        make_config("smoke", defense="asd", overrides={"defense.meta_layers": 5})


def test_a_bad_defense_option_fails_in_under_a_second_before_any_data_loads(monkeypatch, capsys):
    from asdkit.cli import main

    def boom(*a, **k):
        pytest.fail("data loaded")

    monkeypatch.setattr("asdkit.preparation.load", boom)
    t0 = time.perf_counter()
    assert main(["run", "--defense", "asd", "--set", "defense.gamma=1.5"]) == 2
    assert time.perf_counter() - t0 < 1.0
    assert "The 'gamma' option of asd must be a float in (0, 1). Got 1.5 instead." in capsys.readouterr().err


def test_options_command_prints_every_option(capsys):
    from asdkit.cli import main

    assert main(["options", "asd"]) == 0
    out = capsys.readouterr().out
    for o in DEFENSES["asd"].options:
        assert f"  {o.name} " in out
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    for o in config_fields():
        assert f"  {o.name} " in out


# --------------------------------------------------------------------------- scales as budgets


def test_epochs_follow_the_budget_and_the_data_size():
    c = make_config("classroom")
    assert c.epochs == 0 and c.budget == 180_000
    assert resolve_epochs(c, 60_000) == 3
    assert resolve_epochs(c, 4_660) == 39
    assert resolve_epochs(replace(c, epochs=5), 4_660) == 5
    assert resolve_epochs(replace(c, budget=10), 4_660) == 1


def test_a_small_npz_set_trains_as_many_epochs_as_the_budget_buys(tmp_path, monkeypatch):
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path / "runs"))
    g = np.random.default_rng(0)
    y = np.arange(100) % 4
    x = g.integers(0, 60, (100, 1, 8, 8)).astype(np.uint8)
    for k in range(4):
        x[y == k, :, 2 * k:2 * k + 2, :] = 250
    np.savez(tmp_path / "toy.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    config = make_config("smoke", overrides={"dataset": str(tmp_path / "toy.npz"), "budget": 500, "train_size": 0,
                                              "test_size": 0, "attack.size": 2})
    summary = asdkit.run(config, quiet=True)
    assert summary["epochs"] == 5 and summary["phases"] == {"train": 5}


# --------------------------------------------------------------------------- freezing


def test_train_only_keeps_the_frozen_part_and_its_batchnorm_statistics():
    from asdkit.engine import Images, Normalizer, train_epoch
    from asdkit.models import make_model, train_only, unfreeze

    torch.manual_seed(0)
    model = make_model("compact", num_classes=3, in_channels=1, widths=(4, 8, 8))
    x = torch.randint(0, 256, (32, 1, 12, 12), dtype=torch.uint8)
    data = Images(x, torch.arange(32) % 3, Normalizer((0.5,), (0.25,), torch.device("cpu"), channels_last=False), 3, pad=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = train_only(model, [model.linear])
    train_epoch(model, data, torch.arange(32), torch.optim.SGD(params, lr=0.1), generator=torch.Generator(), batch_size=8)
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"linear.weight", "linear.bias"}  # no conv weight, no BatchNorm statistic moved
    unfreeze(model)
    train_epoch(model, data, torch.arange(32), torch.optim.SGD(model.parameters(), lr=0.1), generator=torch.Generator(), batch_size=8)
    assert not torch.equal(model.state_dict()["layer1.bn.running_mean"], before["layer1.bn.running_mean"])


def test_meta_layers_default_is_half_the_feature_extractor_plus_the_head():
    from asdkit.models import last_layers, make_model, meta_layers_default

    compact = make_model("compact", num_classes=10, in_channels=1)
    resnet = make_model("resnet18", num_classes=10, in_channels=3, width=8)
    assert [m for m in last_layers(compact, meta_layers_default(compact))] == [compact.layer3, compact.linear]
    assert last_layers(resnet, meta_layers_default(resnet)) == [resnet.layer3, resnet.layer4, resnet.linear]


# --------------------------------------------------------------------------- the toy defense of ARCHITECTURE.md


def _toy_spec():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "ARCHITECTURE.md", "exec"), namespace)  # noqa: S102 - our own documentation's example
    return namespace["TOY"]


@pytest.fixture
def toy(monkeypatch):
    spec = _toy_spec()
    monkeypatch.setitem(DEFENSES, "toy", spec)
    return spec


def toy_config(**overrides):
    return make_config("smoke", defense="toy", overrides={"train_size": 400, "test_size": 200, **overrides})


def test_the_toy_defense_runs_two_phases_with_their_own_optimisers(toy, runs_env):
    summary = asdkit.run(toy_config(), quiet=True)
    rec = Record.load(summary["record"])
    assert rec.metric("phase") == ["train", "train", "unlearn", "unlearn"]
    assert rec.metric("phase_epoch") == [0, 1, 0, 1]
    assert summary["phases"] == {"train": 2, "unlearn": 2}
    assert rec.metric("pool_size")[2:] == [396, 396]  # 1 % of 400 isolated
    assert rec.metric("poison_in_pool")[2] is not None
    ckpt = load_checked(Path(summary["record"]) / "checkpoint.pt")
    assert set(ckpt["optimizers"]) == {"phase:train", "phase:unlearn"}
    assert "momentum_buffer" not in str(ckpt["optimizers"]["phase:train"])  # Adam
    assert "isolated" in ckpt["state"]
    with pytest.raises(ValueError, match=r"The 'isolation_rate' option of toy must be a float in \(0, 1\]\. Got 2 instead\."):
        toy_config(**{"defense.isolation_rate": 2})


def _weights(folder):
    return load_checked(Path(folder) / "model.pt")


@pytest.mark.parametrize("kill_after", [1, 2, 3], ids=["in-phase-1", "between-phases", "in-phase-2"])
def test_the_toy_defense_killed_in_each_phase_resumes_to_identical_numbers(toy, runs_env, monkeypatch, kill_after):
    reference = asdkit.run(toy_config(), quiet=True, root=runs_env / "reference")
    with dies_after_checkpoint(monkeypatch, kill_after):
        asdkit.run(toy_config(), quiet=True, root=runs_env / "killed")
    resumed = asdkit.run(toy_config(), quiet=True, root=runs_env / "killed")
    a, b = Record.load(reference["record"]), Record.load(resumed["record"])
    assert a.metric("phase") == b.metric("phase")
    for name in ("acc", "asr", "loss", "poison_in_pool"):
        assert a.metric(name) == b.metric(name), name
    wa, wb = _weights(reference["record"]), _weights(resumed["record"])
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_crash_between_record_and_checkpoint_repeats_only_that_epoch(toy, runs_env, monkeypatch):
    reference = asdkit.run(toy_config(), quiet=True, root=runs_env / "reference")
    real, calls = Run._checkpoint, []

    def dying(self, phase, epoch):
        calls.append(1)
        if len(calls) == 3:  # the record of phase 2's first epoch is saved, its checkpoint is not
            raise KeyboardInterrupt
        real(self, phase, epoch)

    monkeypatch.setattr(Run, "_checkpoint", dying)
    with pytest.raises(KeyboardInterrupt):
        asdkit.run(toy_config(), quiet=True, root=runs_env / "killed")
    assert Record.load(run_folder(toy_config(), runs_env / "killed")).epochs == 3
    monkeypatch.setattr(Run, "_checkpoint", real)
    resumed = asdkit.run(toy_config(), quiet=True, root=runs_env / "killed")
    assert Record.load(reference["record"]).metric("acc") == Record.load(resumed["record"]).metric("acc")


# --------------------------------------------------------------------------- trusted inputs


def _reachable(root, stop_types=(types.ModuleType, type, types.BuiltinFunctionType)):
    """Every object reachable from ``root`` through attributes, containers, closures and bound methods.

    Not through modules, classes or a function's globals: those reach the whole interpreter.
    """
    seen, todo = {}, [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, stop_types):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, torch.Tensor):
            continue
        if isinstance(obj, types.FunctionType):
            todo.extend(c.cell_contents for c in (obj.__closure__ or ()) if c.cell_contents is not None)
            todo.extend(obj.__defaults__ or ())
            continue
        todo.extend(gc.get_referents(obj))
        if isinstance(obj, types.MethodType):
            todo.append(obj.__self__)
    return seen


def test_a_defense_cannot_reach_the_ground_truth(toy, runs_env):
    prepared = Run(toy_config(rate=0.1), quiet=True)
    reach = _reachable((prepared.ctx, prepared.phases))  # the context, and the phases' functions and closures
    truth = prepared.truth
    forbidden = {"PoisonedSet": truth, "is_poison": truth.is_poison, "true_label": truth.true_label,
                 "poison_index": truth.poison_index, "record": prepared.record, "runner": prepared}
    assert [name for name, obj in forbidden.items() if id(obj) in reach] == []
    names = {a for obj in reach.values() for a in (getattr(obj, "__dict__", None) or {})}
    assert not names & {"is_poison", "true_label", "poison_index", "truth", "record"}
    # the observed labels are there; they differ from the true ones exactly on the poisoned samples
    assert torch.equal(prepared.ctx.labels, truth.observed_label)
    assert int((prepared.ctx.labels != truth.true_label).sum()) == int(truth.is_poison.sum()) > 0
    # the check can fail: a leak through a closure is found
    prepared.ctx.state["leak"] = lambda: prepared
    assert id(truth.is_poison) in _reachable(prepared.ctx)


def test_asd_cannot_reach_the_ground_truth(runs_env):
    prepared = Run(make_config("smoke", defense="asd", overrides={"train_size": 400, "test_size": 200}), quiet=True)
    reach = _reachable((prepared.ctx, prepared.phases))
    assert id(prepared.truth.is_poison) not in reach and id(prepared.truth) not in reach and id(prepared) not in reach
    assert len(prepared.ctx.seeds) == 100 and not prepared.truth.is_poison[prepared.ctx.seeds].any()


def test_the_runner_counts_the_pool_against_the_ground_truth(toy, runs_env):
    summary = asdkit.run(toy_config(rate=0.1), quiet=True)
    rec = Record.load(summary["record"])
    pool, is_poison = rec.epoch_array("clean_pool"), rec.arrays["is_poison"]
    assert rec.metrics[-1]["poison_in_pool"] == int((pool & is_poison).sum())
    assert summary["tpr"] == pytest.approx(float((~pool & is_poison).sum() / is_poison.sum()))
    assert summary["fpr"] == pytest.approx(float((~pool & ~is_poison).sum() / (~is_poison).sum()))


def test_the_progress_bar_is_throttled_when_the_output_is_not_a_terminal(toy, runs_env):
    prepared = Run(toy_config(), quiet=False)
    bar = prepared._progress(0, 0)
    try:
        assert bar.mininterval >= 30  # pytest captures stderr: not a terminal
        assert bar.total == sum(p.steps * p.epochs for p in prepared.phases)
    finally:
        bar.close()
