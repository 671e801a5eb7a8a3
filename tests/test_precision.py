"""The 'precision' field: what auto chooses, the errors before any work, float32 kept for ranking, keys and resumes.

The suite trains in float32 ($ASDKIT_PRECISION, conftest.py); these tests ask for bf16 themselves, on a CPU declared
to have it (oneDNN emulates bfloat16 where it does not, slower but the same code path).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch
from helpers import dies_after_checkpoint, forbid_training

import asdkit
from asdkit import precision
from asdkit.cli import main
from asdkit.config import config_hash, make_config
from asdkit.records import Record

pytestmark = pytest.mark.usefixtures("one_thread")


def cpu_with_bf16(monkeypatch, native: bool) -> None:
    """Declare this CPU to have native bfloat16 or not (the probe itself is a read of the CPU's flags)."""
    why = "this CPU has AVX512-BF16 (test)" if native else "this CPU has neither AVX512-BF16 nor AMX (test)"
    monkeypatch.setattr(precision, "_cpu_bf16", lambda: (native, why))


def tiny(p: str, defense: str = "none", **overrides):
    return make_config("smoke", defense=defense, overrides={"precision": p, "device": "cpu", "train_size": 600, "test_size": 300,
                                                            **overrides})


def weights(summary) -> dict:
    from pathlib import Path

    return torch.load(Path(summary["record"]) / "model.pt", weights_only=True)


def numbers(summary) -> list[dict]:
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in Record.load(summary["record"]).metrics]


@pytest.mark.parametrize("native,chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_takes_bf16_only_where_the_cpu_has_it(monkeypatch, native, chosen):
    cpu_with_bf16(monkeypatch, native)
    assert tiny("auto").precision == chosen
    monkeypatch.delenv("ASDKIT_PRECISION")
    assert make_config("smoke", overrides={"device": "cpu"}).precision == chosen  # auto is the default
    monkeypatch.setenv("ASDKIT_PRECISION", "fp32")
    assert make_config("smoke", overrides={"device": "cpu"}).precision == "fp32"
    assert precision.resolve_precision("auto", torch.device("cpu"))[1].startswith("this CPU has")


def test_a_bad_default_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("ASDKIT_PRECISION", "fp16")
    with pytest.raises(ValueError, match=r"ASDKIT_PRECISION must be one of \['auto', 'fp32', 'bf16'\].*Got 'fp16'"):
        make_config("smoke")


def test_bf16_on_a_cpu_without_it_is_one_line_before_any_work(runs_env, monkeypatch, capsys):
    cpu_with_bf16(monkeypatch, False)
    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=r"The 'precision' field is 'bf16' but this CPU has neither AVX512-BF16 nor AMX.*'fp32'"):
        tiny("bf16")
    assert main(["run", "--scale", "smoke", "--set", "precision=bf16"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "'precision'" in err and "['auto', 'fp32', 'bf16']" in err and "supports 'fp32'" in err
    # a config made on a machine that has bf16, run on one that does not: refused by the run, before it trains
    made_elsewhere = replace(tiny("fp32"), precision="bf16")
    with pytest.raises(ValueError, match=r"'precision' field is 'bf16' but this CPU has neither"):
        asdkit.run(made_elsewhere, quiet=True)
    assert not any(runs_env.glob("*/record.pt"))


def test_fp32_keys_and_repeats_its_record_as_before_the_field_and_never_autocasts(runs_env, monkeypatch):
    config = tiny("fp32", "asd", epochs=4)
    before = config.to_dict()
    del before["device"], before["precision"]  # what the key was made of before the field existed
    assert config_hash(config) == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def no_autocast(*args, **kwargs):
        pytest.fail("float32 entered autocast")

    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", no_autocast)
    fp32 = asdkit.run(config, quiet=True)
    from asdkit import devices

    chunk = devices.CPU_CHUNK
    monkeypatch.setattr(devices, "CPU_CHUNK", 1024)  # the engine before this field: no autocast, one pass per eval batch
    old_engine = asdkit.run(config, quiet=True, root=runs_env / "old engine")
    assert numbers(old_engine) == numbers(fp32)
    assert all(torch.equal(v, weights(fp32)[k]) for k, v in weights(old_engine).items())
    monkeypatch.setattr(devices, "CPU_CHUNK", chunk)
    monkeypatch.setattr(torch, "autocast", real_autocast)
    cpu_with_bf16(monkeypatch, True)
    bf16 = asdkit.run(tiny("bf16", "asd", epochs=4), quiet=True)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16") and bf16["precision_reason"] == "this CPU has AVX512-BF16 (test)"
    assert Record.load(bf16["record"]).config["precision"] == "bf16"
    assert bf16["record"] != fp32["record"]  # a bf16 record is never reused for fp32
    assert numbers(bf16) != numbers(fp32)  # and it did train in bfloat16


def test_under_bf16_training_is_autocast_and_ranking_is_not(runs_env, monkeypatch):
    import asdkit.context as context

    cpu_with_bf16(monkeypatch, True)
    seen, scoring = [], []
    real_score = context.score

    def score(*args, **kwargs):
        scoring.append(True)
        try:
            return real_score(*args, **kwargs)
        finally:
            scoring.pop()

    monkeypatch.setattr(context, "score", score)

    def hook(module, inputs, output):
        if module.__class__.__name__ == "CompactResNet":
            seen.append(("score" if scoring else "train" if module.training else "eval", torch.is_autocast_enabled("cpu")))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        asdkit.run(tiny("bf16", "asd", epochs=4), quiet=True)  # stage 3 included: the meta-split's virtual model and its L1
    finally:
        handle.remove()
    by_kind = {kind: {on for k, on in seen if k == kind} for kind in ("score", "train", "eval")}
    assert by_kind["score"] == {False}  # L1(θ), L1(θ'): every ranking pass in float32
    assert by_kind["train"] == {True}  # MixMatch's steps and label guessing, the virtual model's steps
    assert True in by_kind["eval"]  # evaluation (an argmax) in bfloat16; the final losses' snapshot in float32


def test_a_killed_bf16_run_resumes_bit_for_bit(runs_env, monkeypatch):
    cpu_with_bf16(monkeypatch, True)
    config = tiny("bf16", epochs=4)
    reference = asdkit.run(config, quiet=True, root=runs_env / "a")
    with dies_after_checkpoint(monkeypatch, 2):
        asdkit.run(config, quiet=True, root=runs_env / "b")
    resumed = asdkit.run(config, quiet=True, root=runs_env / "b")
    assert numbers(resumed) == numbers(reference)
    a, b = weights(reference), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
