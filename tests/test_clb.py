"""CLB, the label-consistent backdoor: the ε ball, kept labels, and the prepared-poison cache."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import asdkit.attacks.clb
from asdkit import make_config, run
from asdkit.attacks import CLB, make_attack, poison
from asdkit.data.types import ImageSet
from asdkit.engine import Normalizer
from asdkit.models import make_model
from asdkit.prepared import poison_cache, surrogate_config

pytestmark = pytest.mark.usefixtures("one_thread")


def images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8), torch.arange(n) % 4,
                    classes=tuple("abcd"), mean=(0.5,), std=(0.25,))


def test_pgd_stays_in_its_ball_and_raises_the_clean_models_loss():
    data = images()
    torch.manual_seed(0)
    model = make_model("compact", num_classes=4, in_channels=1, widths=[8, 8, 8])
    normalize = Normalizer(data.mean, data.std, torch.device("cpu"), channels_last=False)
    attack = CLB(data.shape, epsilon=8, step=2, steps=10)
    adv = attack.perturb(model, data.x, data.y, normalize=normalize)
    diff = adv.int() - data.x.int()
    assert adv.dtype == torch.uint8 and diff.abs().max() <= 8 and (diff != 0).float().mean() > 0.5
    noise = (data.x.int() + 8 * (torch.randint(0, 2, data.x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1)).clamp(0, 255)
    model.eval()
    with torch.no_grad():
        before, random, after = (F.cross_entropy(model(normalize(x)), data.y).item() for x in (data.x, noise, adv))
    assert after > before and after - before > 3 * abs(random - before), (before, random, after)  # ascent, not noise


def test_clb_poisons_only_the_target_class_keeps_labels_and_stamps_the_square():
    data = images()
    attack = make_attack("clb", data.shape, epsilon=8, corners=4, size=2)
    source = data.x.clone()
    source[data.y == 1] = (data.x[data.y == 1].int() + 5).clamp(max=255).to(torch.uint8)  # stands in for the PGD images
    p = poison(data, attack, rate=0.5, target=1, seed=0, source=source)
    assert int(p.is_poison.sum()) == 5 and bool((p.true_label[p.is_poison] == 1).all())
    assert torch.equal(p.observed_label, p.true_label)  # clean-label: nothing relabelled
    x = p.x[p.is_poison]
    for r, c in ((0, 0), (0, 10), (10, 0), (10, 10)):
        assert bool((x[:, :, r : r + 2, c : c + 2] == 255).all())
    inner = slice(2, 10)
    assert torch.equal(x[:, :, inner, inner], source[p.is_poison][:, :, inner, inner])
    assert torch.equal(p.x[~p.is_poison], data.x[~p.is_poison])
    with pytest.raises(ValueError, match="'source' parameter of poison"):
        poison(data, attack, rate=0.5, target=1, seed=0, source=source[:3])


@pytest.mark.parametrize("kwargs, name", [({"epsilon": 0}, "epsilon"), ({"step": -1}, "step"), ({"steps": 1.5}, "steps"),
                                          ({"corners": 2}, "corners")])
def test_clb_rejects_bad_options(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of CLB"):
        CLB((1, 12, 12), **kwargs)


def tiny_clb(**attack):
    return make_config("smoke", overrides={"attack": "clb", "rate": 0.5, "train_size": 600, "test_size": 300, "epochs": 1,
                                           **{f"attack.{k}": v for k, v in {"steps": 3, **attack}.items()}})


def count_perturb(monkeypatch) -> list[int]:
    calls, real = [], CLB.perturb

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(asdkit.attacks.clb.CLB, "perturb", counting)
    return calls


def test_the_poison_is_built_once_from_the_clean_twin_and_reused(runs_env, monkeypatch):
    calls = count_perturb(monkeypatch)
    config = tiny_clb()
    first = run(config, quiet=True)
    cache = poison_cache(config, runs_env)
    assert cache.exists() and len(calls) == 1
    twin = surrogate_config(config)
    assert (twin.rate, twin.defense, twin.train_size, twin.epochs) == (0.0, "none", config.train_size, 0)  # no defense's own recipe
    assert any(p.name.startswith("none-badnets-") for p in runs_env.iterdir()), "the clean twin is a record of its own"
    # another defense of the same poisoned set reuses the poison: no PGD again
    run(make_config("smoke", defense="abl", overrides={k: v for k, v in [("attack", "clb"), ("rate", 0.5), ("train_size", 600),
                                                                         ("test_size", 300), ("epochs", 1), ("attack.steps", 3)]}),
        quiet=True)
    assert len(calls) == 1
    again = run(config, quiet=True, force=True)
    assert len(calls) == 1 and again["acc"] == first["acc"] and again["asr"] == first["asr"]
    # a changed option builds its own poison
    changed = tiny_clb(epsilon=4)
    assert poison_cache(changed, runs_env) != cache
    run(changed, quiet=True)
    assert len(calls) == 2


def test_a_corrupt_poison_file_is_a_clear_error_and_is_rebuilt_on_request(runs_env, monkeypatch):
    calls = count_perturb(monkeypatch)
    config = tiny_clb()
    run(config, quiet=True)
    cache = poison_cache(config, runs_env)
    cache.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"prepared poison .* is corrupt.*--rebuild-poison"):
        run(config, quiet=True, force=True)
    rebuilt = run(config, quiet=True, rebuild_poison=True)
    assert len(calls) == 2 and rebuilt["acc"] > 0
    assert torch.load(cache, weights_only=True)["format"] == "asdkit-poison/2"
