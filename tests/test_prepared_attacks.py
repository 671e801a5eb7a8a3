"""The prepared attacks: IAB, adaptive-patch, Refool, ASD's adaptive attacks; each built once, cached, reused, rebuilt on request."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from asdkit import make_config, run
from asdkit.attacks import AdaptivePatch, make_attack, poison
from asdkit.attacks.build import BuildInputs
from asdkit.attacks.iab import squash
from asdkit.data.types import ImageSet
from asdkit.engine import Normalizer
from asdkit.models import make_model
from asdkit.prepared import poison_cache

pytestmark = pytest.mark.usefixtures("one_thread")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def images(n=256, shape=(1, 12, 12), classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), torch.arange(n) % classes,
                    classes=tuple("abcdefghij"[:classes]), mean=(0.5,) * shape[0], std=(0.25,) * shape[0])


def inputs_for(data, *, surrogate=None, target=1):
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    return BuildInputs(data=data, target=target, label_mode="all2one", normalize=Normalizer(data.mean, data.std, cpu, channels_last=False),
                       device=cpu, seed=0, new_model=lambda: make_model("compact", num_classes=data.num_classes,
                                                                        in_channels=data.shape[0], widths=[8, 8, 8]),
                       surrogate=surrogate, batch_size=32, pad=1)


def npz(tmp_path, n=10, seed=3) -> Path:
    g = np.random.default_rng(seed)
    path = tmp_path / "reflections.npz"
    x = g.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.zeros(n, np.uint8), x_test=x[:2], y_test=np.zeros(2, np.uint8))
    return path


# --------------------------------------------------------------------------- IAB


def test_iab_gives_each_input_its_own_trigger_and_its_cross_samples_keep_their_labels():
    data = images()
    attack = make_attack("iab", data.shape, epochs=2, mask_epochs=1, cross_ratio=1.0)
    state = attack.build(inputs_for(data))
    assert set(state) == {"generator", "mask"}
    attack.load_state(state)
    x = data.x[:32].float() / 255
    with torch.no_grad():
        patterns = squash(attack.generator(x))
        residual = attack.blend(x, x) - x
    distinct = (patterns[:16] - patterns[16:]).abs().mean((1, 2, 3))
    # input-aware: each input its own trigger (a generator that ignores its input gives 0 here). After 2 tiny epochs the size
    # is chaotic: mean 0.020 on one thread, 0.006 on two, of one AMD EPYC; so the bound is an order below, not a measured value
    assert bool((distinct > 1e-4).all()) and float(distinct.mean()) > 1e-3, distinct
    assert bool((residual.abs().flatten(1).sum(1) > 0).all())

    p = poison(data, attack, rate=0.1, target=1, seed=0)
    cover = p.is_cover
    assert int(p.is_poison.sum()) == round(0.1 * len(data)) and int(cover.sum()) == round(1.0 * 0.1 * len(data))
    assert torch.equal(p.observed_label[cover], p.true_label[cover])  # cross-trigger samples keep their labels
    assert bool((p.observed_label[p.is_poison] == 1).all())
    own = attack(data.x[cover])
    assert (p.x[cover] != data.x[cover]).flatten(1).any(1).float().mean() > 0.9  # they carry a trigger...
    assert (p.x[cover] != own).flatten(1).any(1).float().mean() > 0.9  # ...another image's, not their own


def test_an_unbuilt_iab_says_how_to_build_it():
    with pytest.raises(RuntimeError, match="prepare_attack"):
        make_attack("iab", (1, 12, 12))(torch.zeros(2, 1, 12, 12, dtype=torch.uint8))


# --------------------------------------------------------------------------- adaptive-patch


def test_adaptive_patch_keeps_its_conservatism_ratio_and_one_piece_a_training_sample():
    data = images(400, (1, 28, 28), classes=10)
    attack = AdaptivePatch(data.shape, k=4, cover_ratio=2.0)
    p = poison(data, attack, rate=0.05, target=0, seed=0)
    n_poison, n_cover = int(p.is_poison.sum()), int(p.is_cover.sum())
    assert (n_poison, n_cover) == (20, 40) and n_cover / n_poison == 2.0
    assert torch.equal(p.observed_label[p.is_cover], p.true_label[p.is_cover])  # conservatism: labels kept
    s = attack.size

    def piece(x0, x1):
        """Which patch region holds every changed pixel of one sample (or -1)."""
        changed = (x0 != x1).any(0)
        for j, (r, c) in enumerate(attack.positions):
            inside = torch.zeros_like(changed)
            inside[r : r + s, c : c + s] = True
            if changed.any() and not (changed & ~inside).any():
                return j
        return -1

    for mask in (p.is_poison, p.is_cover):
        rows = mask.nonzero().flatten()
        pieces = [piece(data.x[i], p.x[i]) for i in rows]
        assert -1 not in pieces
        assert sorted(pieces.count(j) for j in range(4)) == [len(rows) // 4] * 4  # the toolbox's equal split
    full = attack(data.x[:5])
    for j, (r, c) in enumerate(attack.positions):  # the test trigger: every patch, fully opaque
        assert torch.equal(full[:, :, r : r + s, c : c + s].float(), attack.patterns[j].expand(5, -1, -1, -1))


# --------------------------------------------------------------------------- Refool


def test_refool_reflections_come_from_the_candidate_set(tmp_path):
    path = npz(tmp_path)
    attack = make_attack("refool", (1, 28, 28), reflections=str(path), candidates=4)
    state = attack.build(inputs_for(images(8, (1, 28, 28))))
    bank, pool = state["reflections"], attack.to_victim(torch.from_numpy(np.load(path)["x_train"]))
    assert bank.shape == (4, 1, 28, 28)
    matches = [[torch.equal(b, c) for c in pool] for b in bank]
    assert all(sum(m) == 1 for m in matches) and len({m.index(True) for m in matches}) == 4  # 4 distinct candidates
    attack.load_state(state)
    x = images(64, (1, 28, 28)).x
    out = attack.apply(x)
    assert torch.equal(out, attack.apply(x)) and (out != x).flatten(1).any(1).all()
    # a black reflection adds nothing: each image only dims, by its own transmission α_t (linear light)
    attack.load_state({"reflections": torch.zeros(1, 1, 28, 28, dtype=torch.uint8)})
    dim = attack.apply(x).float()
    ratio = (dim / 255) ** 2.2 / ((x.float() / 255) ** 2.2).clamp(min=1e-3)
    bright = x > 60
    spread = torch.stack([ratio[i][bright[i]].std() for i in range(len(x))])
    assert float(spread.max()) < 0.05 and 0.5 < float(ratio[bright].mean()) < 1.0


@pytest.mark.skipif(not (SHARED / "cifar10-mini.npz").exists(), reason="../shared/data/cifar10-mini.npz not present")
def test_refool_on_fashion_mnist_reads_real_cifar10_reflections():
    attack = make_attack("refool", (1, 28, 28), reflections=str(SHARED / "cifar10-mini.npz"), candidates=50)
    state = attack.build(inputs_for(images(8, (1, 28, 28))))
    assert state["reflections"].shape == (50, 1, 28, 28) and state["reflections"].float().std() > 20


# --------------------------------------------------------------------------- ASD's adaptive attacks


@pytest.mark.parametrize("name", ["asd-adaptive-grad", "asd-adaptive-feat"])
def test_asd_adaptive_trigger_lowers_its_objective_inside_the_ball(name):
    data = images(128, (1, 12, 12))
    torch.manual_seed(0)
    model = make_model("compact", num_classes=4, in_channels=1, widths=[8, 8, 8])
    attack = make_attack(name, data.shape, epsilon=16, step=2, iterations=12, batch_size=32)
    inputs = inputs_for(data, surrogate=model)
    state = attack.build(inputs)
    assert len(state["objective"]) == 12
    x, y = data.x[data.y != inputs.target].float(), inputs.relabel(data.y[data.y != inputs.target])
    if name.endswith("grad"):  # Eq. 11's poisoned term on every image to be poisoned (a PGD batch is noisier than the descent)
        objective = lambda p: float(attack._gradient_norm(model, (x + p).clamp(0, 255), y, inputs.normalize, create_graph=False))
    else:  # Eq. 12
        target = attack._target_features(model, inputs)
        objective = lambda p: float((model.features(inputs.normalize((x + p).clamp(0, 255))).mean(0) - target).norm().detach())
    assert objective(state["pattern"]) < 0.99 * objective(torch.zeros(data.shape))
    attack.load_state(state)
    assert float(attack.pattern.abs().max()) <= 16
    diff = attack(data.x).int() - data.x.int()
    assert int(diff.abs().max()) <= 16 and (diff != 0).any()
    with pytest.raises(ValueError, match="within"):
        attack.load_state({"pattern": torch.full(data.shape, 40.0)})


# --------------------------------------------------------------------------- the cache: built once, reused, rebuilt


def tiny(attack, tmp_path, **options):
    extra = {"reflections": str(npz(tmp_path)), "candidates": 6} if attack == "refool" else {}
    extra |= {"epochs": 1, "mask_epochs": 1} if attack == "iab" else {}
    extra |= {"iterations": 3} if attack.startswith("asd-adaptive") else {}
    overrides = {"attack": attack, "train_size": 600, "test_size": 300, "epochs": 1,
                 **{f"attack.{k}": v for k, v in {**extra, **options}.items()}}
    return overrides


def count_builds(monkeypatch, cls) -> list[int]:
    calls, real = [], cls.build

    def counting(self, inputs):
        calls.append(1)
        return real(self, inputs)

    monkeypatch.setattr(cls, "build", counting)
    return calls


@pytest.mark.parametrize("name", ["iab", "refool", "asd-adaptive-feat"])
def test_each_prepared_poison_is_cached_reused_rebuilt_and_a_corrupt_one_is_a_clear_error(name, runs_env, tmp_path, monkeypatch, capsys):
    from asdkit.attacks import ATTACKS

    calls = count_builds(monkeypatch, ATTACKS[name])
    overrides = tiny(name, tmp_path)
    config = make_config("smoke", overrides=overrides)
    first = run(config, quiet=True)
    cache = poison_cache(config, runs_env)
    assert cache.exists() and len(calls) == 1
    run(make_config("smoke", defense="abl", overrides=overrides))  # another defense of the same poisoned set
    assert len(calls) == 1 and "reusing the prepared" in capsys.readouterr().err
    again = run(config, quiet=True, force=True)
    assert len(calls) == 1 and (again["acc"], again["asr"]) == (first["acc"], first["asr"])
    option = {"iab": {"epochs": 2}, "refool": {"candidates": 5}, "asd-adaptive-feat": {"iterations": 4}}[name]
    assert poison_cache(make_config("smoke", overrides=tiny(name, tmp_path, **option)), runs_env) != cache  # a changed option: a new poison
    cache.write_bytes(b"\x00 not a torch file")
    with pytest.raises(ValueError, match=r"prepared poison .* is corrupt.*--rebuild-poison"):
        run(config, quiet=True, force=True)
    rebuilt = run(config, quiet=True, rebuild_poison=True)
    assert len(calls) == 2 and (rebuilt["acc"], rebuilt["asr"]) == (first["acc"], first["asr"])


@pytest.mark.parametrize("name", ["iab", "refool"])
def test_the_preflight_gives_a_builds_poisoned_and_cover_samples_without_building_it(name, tmp_path):
    """asdkit.planner.preflight checks a prepared attack with no build and no file written, yet with the truth a build gives."""
    from asdkit.preparation import prepare
    from asdkit.runner import Run

    config, root = make_config("smoke", defense="none", overrides=tiny(name, tmp_path)), tmp_path / "runs"
    checked = prepare(config, root=root, quiet=True, preflight=True).truth
    assert not list(root.rglob("*.pt"))
    built = Run(config, root=root, quiet=True).truth
    assert len(list((root / "cache").glob(f"{name}-*.pt"))) == 1
    for field in ("is_poison", "true_label", "observed_label", "is_cover"):
        assert torch.equal(getattr(checked, field), getattr(built, field)), field
    assert int(built.is_poison.sum()) == round(config.rate * len(built.is_poison))
    assert name != "iab" or int(built.is_cover.sum()) > 0  # IAB's cross-trigger samples


def test_the_preflight_checks_the_clean_twin_a_surrogate_attack_trains(monkeypatch, tmp_path):
    """CLB's build first trains the run's clean twin: a twin its checks refuse stops the pre-flight, not the build."""
    import dataclasses

    from asdkit import prepared
    from asdkit.planner import preflight

    config = make_config("smoke", overrides=tiny("clb", tmp_path))
    preflight([config], tmp_path / "runs")  # the real twin passes
    real = prepared.surrogate_config
    monkeypatch.setattr(prepared, "surrogate_config", lambda c: dataclasses.replace(real(c), model_args={"no_such_option": 3}))
    with pytest.raises(ValueError, match=r"none / clb at smoke \(seed 0\): The 'model_args' field .*\['no_such_option'\]"):
        preflight([config], tmp_path / "runs")
    assert not list((tmp_path / "runs").rglob("*.pt"))


def test_a_build_whose_result_changed_keys_a_new_cache_file(monkeypatch, tmp_path):
    """An attack's ``build_version`` is part of its cache key: a changed build never reuses the old poison."""
    from asdkit.attacks import ATTACKS

    config = make_config("smoke", overrides=tiny("asd-adaptive-grad", tmp_path))
    before = poison_cache(config, tmp_path)
    monkeypatch.setattr(ATTACKS["asd-adaptive-grad"], "build_version", 3)
    assert poison_cache(config, tmp_path) != before
