"""DBD's figures (004): t-SNE of supervised vs self-supervised features, SCE vs CE, poisoned examples, and DBD's two sweeps."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..records import Record
from .common import bars, final, pct, run, same_data, truth
from .registry import Drawn, register

CLB = {"rate": 0.25}


def _plt():
    import matplotlib.pyplot as plt

    return plt


# -- Fig. 1: t-SNE ---------------------------------------------------------------------------
def _tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(features.astype(np.float32))


def _tsne_needs(scale: str) -> dict:
    data = same_data(scale, "dbd")
    return {"supervised | badnets": run("none", "badnets", **data), "self-supervised | badnets": run("dbd", "badnets"),
            "supervised | clb": run("none", "clb", **data, **CLB), "self-supervised | clb": run("dbd", "clb", **CLB)}


@register("dbd_fig01", caption="t-SNE of backbone features: supervised vs self-supervised, BadNets and label-consistent",
          claim="supervised: poisoned samples form their own cluster; self-supervised: they sit with their true class",
          needs=_tsne_needs)
def dbd_fig01(records, scale):
    plt = _plt()
    from ..analysis import feature_neighbourhoods

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), constrained_layout=True)
    agree = {}
    for ax, (label, rec) in zip(axes, records.items()):
        kind, attack = label.split(" | ")
        snap = "features" if kind == "supervised" else "simclr_features"
        s = rec.snapshots[snap]
        index = s["index"].numpy()
        poison = rec.arrays["is_poison"].numpy()[index].astype(bool)
        true = rec.arrays["true_label"].numpy()[index]
        xy = _tsne(s["features"].float().numpy(), seed=rec.config["seed"])
        ax.scatter(xy[~poison, 0], xy[~poison, 1], c=true[~poison], cmap="tab10", s=3, alpha=0.6)
        ax.scatter(xy[poison, 0], xy[poison, 1], c="k", marker="x", s=12, lw=0.8, label="poisoned")
        agree[label] = {**feature_neighbourhoods(rec, snap), "poisoned": _poisoned_neighbours(s["features"].float().numpy(), poison)}
        ax.set_title(f"{kind}, {attack} (colour: true class)\na poisoned point's 10 nearest neighbours:\n"
                     f"{pct(agree[label]['poisoned'])} poisoned, {pct(agree[label]['observed'])} clean of the target", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="lower right")
    parts = [f"{k}: {pct(v['poisoned'])}" for k, v in agree.items()]
    ok = all(agree[f"self-supervised | {a}"]["poisoned"] < agree[f"supervised | {a}"]["poisoned"] for a in ("badnets", "clb"))
    return Drawn(fig, "share of poisoned points among a poisoned point's 10 nearest neighbours (cosine): " + "; ".join(parts),
                 ok, {"agreement": agree})


def _poisoned_neighbours(features: np.ndarray, poison: np.ndarray, k: int = 10) -> float:
    """004 Fig. 1's clusters as a number: the mean share of poisoned points among a poisoned point's k nearest (cosine) neighbours."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(features.astype(np.float64))
    _, idx = nn.kneighbors(features[poison].astype(np.float64))
    return float(poison[idx[:, 1:]].mean())


# -- Fig. 3: SCE vs CE ------------------------------------------------------------------------
@register("dbd_fig03", caption="normalised stage-2 losses of heads trained with SCE vs CE, BadNets 20 %",
          claim="SCE widens the gap between poisoned and benign losses",
          needs=lambda s: {"SCE": run("dbd", "badnets", rate=0.2), "CE": run("dbd", "badnets", rate=0.2, defense__head_loss="ce")})
def dbd_fig03(records, scale):
    plt = _plt()
    from ..analysis import stage2_separation
    from .common import hist_groups

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    sep = {}
    for ax, (name, rec) in zip(axes, records.items()):
        poison, _ = truth(rec)
        loss = rec.snapshots["stage2"][name.lower()].double().numpy()
        norm = (loss - loss.min()) / max(loss.max() - loss.min(), 1e-12)
        sep[name] = stage2_separation(rec)
        hist_groups(ax, norm, {"clean": ~poison, "poisoned": poison}, xlabel=f"normalised {name} loss of the head")
        ax.set_title(f"head trained with {name}: gap of means {sep[name]['normalised_gap']:.3f}, AUROC {sep[name]['auroc']:.3f}", fontsize=9)
    number = (f"gap of the normalised means SCE {sep['SCE']['normalised_gap']:.3f} vs CE {sep['CE']['normalised_gap']:.3f}; "
              f"AUROC {sep['SCE']['auroc']:.3f} vs {sep['CE']['auroc']:.3f}")
    return Drawn(fig, number, bool(sep["SCE"]["normalised_gap"] > sep["CE"]["normalised_gap"]), {"separation": sep})


# -- Figs. 4 and 5: poisoned examples ---------------------------------------------------------------
GRID_ATTACKS = ("badnets", "blend", "wanet", "sig", "trojan", "clb", "iab", "refool", "adaptive-patch", "asd-adaptive-grad", "asd-adaptive-feat")


def _second_dataset() -> str:
    """A second data set available offline for Fig. 5: CIFAR-10, else the shared CIFAR-10 or GTSRB subsets."""
    from ..data import load

    for name in ("cifar10", "gtsrb"):
        try:
            load(name, download=False)
            return name
        except (FileNotFoundError, OSError, ValueError, RuntimeError):
            pass
    shared = Path(os.environ.get("ASDKIT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    for f in ("cifar10-mini.npz", "gtsrb-mini.npz"):
        if (shared / f).exists():
            return str(shared / f)
    raise FileNotFoundError("004 Fig. 5 needs a second data set offline: CIFAR-10 or GTSRB (`asdkit data` says how), "
                            "or the shared subsets under $ASDKIT_SHARED_DATA.")


def _grid_needs(scale: str, dataset: str | None = None) -> dict:
    """The prepared attacks' poison is built by a no-defense run against each (cached in runs/cache), so drawing never trains."""
    from ..attacks import ATTACKS

    if dataset is not None:
        return {}
    refl = {"attack__reflections": _reflections()}
    return {a: run("none", a, **(CLB if a == "clb" else {}), **(refl if a == "refool" else {}))
            for a in GRID_ATTACKS if ATTACKS[a].prepared is not None}


def _display_name(dataset: str) -> str:
    """A data set as a reader names it: the shared subsets ``cifar10-mini.npz`` and ``gtsrb-mini.npz`` are subsets of CIFAR-10 and GTSRB."""
    stem = Path(dataset).stem
    return {"cifar10-mini": "a CIFAR-10 subset", "gtsrb-mini": "a GTSRB subset", "cifar10": "CIFAR-10", "gtsrb": "GTSRB"}.get(stem, stem)


def _reflections() -> str:
    """Refool's reflection images: CIFAR-10 if present, else the shared subset (the attack checks it before any work)."""
    try:
        return _second_dataset()
    except FileNotFoundError:
        return "cifar10"


def poisoned_examples(config, *, count: int = 3, root: Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(clean, poisoned) uint8 images of ``count`` poisoned training samples of ``config``'s data and attack, and their class names.

    A prepared attack reads its cached poison (a run against it built it); nothing trains here.
    """
    import torch

    from ..attacks import ATTACKS
    from ..preparation import poisoned_set, splits
    from ..prepared import poison_cache
    from ..records import run_folder, runs_dir

    train, _ = splits(config)
    attack = ATTACKS[config.attack]
    if attack.needs_build(config.rate):
        root = Path(root or runs_dir())
        if not poison_cache(config, run_folder(config, root).parent).exists():
            raise FileNotFoundError(f"the {config.attack} poison is not built yet (run `asdkit run --attack {config.attack}` first)")
    _, ps = poisoned_set(config, train, root=root)  # the same images the run trains on, the poison read from its cache
    idx = ps.poison_index[torch.randperm(len(ps.poison_index), generator=torch.Generator().manual_seed(0))[:count]]
    names = [train.classes[int(c)] if train.classes else str(int(c)) for c in ps.true_label[idx]]
    return train.x[idx].numpy(), ps.x[idx].numpy(), names


def _image(a: np.ndarray) -> np.ndarray:
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def _draw_grid(configs: dict, title: str, root=None) -> Drawn:
    plt = _plt()
    examples = {a: poisoned_examples(c, root=root) for a, c in configs.items()}
    cols = len(examples)
    fig, axes = plt.subplots(4, cols, figsize=(1.45 * cols + 0.6, 6.4), constrained_layout=True, squeeze=False)
    res = {}
    for j, (a, (clean, pois, names)) in enumerate(examples.items()):
        diff = np.abs(pois.astype(np.int16) - clean.astype(np.int16))
        res[a] = float(diff.mean())
        gray = clean.shape[1] == 1
        for i in range(3):
            axes[i, j].imshow(_image(pois[i]), cmap="gray" if gray else None, vmin=0, vmax=255)
            axes[i, j].set_xlabel(names[i], fontsize=6, labelpad=1)
        amp = np.clip(diff[0] * (255.0 / max(1, diff[0].max())), 0, 255).astype(np.uint8)
        axes[3, j].imshow(_image(amp), cmap="magma" if gray else None)
        axes[3, j].set_xlabel(f"|residual| ×{255 / max(1, diff[0].max()):.0f}", fontsize=6, labelpad=1)
        axes[0, j].set_title(a, fontsize=8)
        for i in range(4):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    fig.suptitle(title, fontsize=10)
    number = "mean |residual| per pixel (0-255): " + ", ".join(f"{a} {v:.1f}" for a, v in res.items())
    return Drawn(fig, number, None, {"residual": res})


def _grid_configs(scale: str, dataset: str | None = None) -> dict:
    from ..config import make_config

    out = {}
    for a in GRID_ATTACKS:
        ov = {"attack": a, **(CLB if a == "clb" else {})}
        if a == "refool":
            ov["attack.reflections"] = _reflections()
        if dataset is not None:
            from ..attacks import ATTACKS

            if ATTACKS[a].prepared is not None:
                continue  # built against a clean twin of their own data set: not for a data set no run reads
            ov.update(dataset=dataset, train_size=0, test_size=0)
        out[a] = make_config(scale, overrides=ov)
    return out


@register("dbd_fig04", caption="poisoned examples of every attack", claim="every implemented attack on the same data, residual magnified",
          needs=_grid_needs)
def dbd_fig04(records, scale):
    return _draw_grid(_grid_configs(scale), "poisoned training images of every attack (004 Fig. 4), bottom row: the residual, magnified",
                      root=_root(records))


def _root(records: dict):
    rec = next(iter(records.values()), None)
    return None if rec is None or rec.path is None else rec.path.parent.parent


@register("dbd_fig05", caption="poisoned examples on a second data set (CIFAR-10 or GTSRB; the paper: VGGFace2)",
          claim="the same grid on a second data set", needs=lambda s: {},
          reduced="the attacks that need no build (the prepared ones are built against a clean twin of the run's own data)")
def dbd_fig05(records, scale):
    ds = _second_dataset()
    return _draw_grid(_grid_configs(scale, ds), f"poisoned images of {_display_name(ds)} (004 Fig. 5 on a data set available offline)")


# -- Figs. 6 and 7: DBD's sweeps --------------------------------------------------------------------
FILTER = (0.3, 0.5, 0.7, 0.9)
POISON = (0.05, 0.1, 0.2)


@register("dbd_fig06", caption="DBD's filtering rate α", claim="ASR stays near 0 until α is large",
          needs=lambda s: {f"α = {r}": run("dbd", "badnets", defense__filter_rate=r) for r in (FILTER if s != "smoke" else (0.5, 0.9))},
          reduced="BadNets 10 %, α 0.3-0.9 (paper 0-1 on three attacks)")
def dbd_fig06(records, scale):
    return _sweep(records, "filtering rate α (004 Fig. 6)", lambda t: all(v["asr"] < 0.1 for v in list(t.values())[:2]))


@register("dbd_fig07", caption="DBD under a growing poisoning rate", claim="defended up to 20 %",
          needs=lambda s: {f"{int(100 * r)} %": run("dbd", "badnets", rate=r) for r in (POISON if s != "smoke" else (0.1, 0.2))},
          reduced="BadNets 5-20 % (paper 1-20 % on three attacks)")
def dbd_fig07(records, scale):
    return _sweep(records, "poisoning rate (004 Fig. 7)", lambda t: max(v["asr"] for v in t.values()) < 0.1)


def _sweep(records: dict, title: str, check) -> Drawn:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    labels = list(records)
    bars(ax, labels, {"ACC": [r.summary["acc"] for r in records.values()], "ASR": [r.summary["asr"] for r in records.values()]})
    ax.set_title(f"DBD vs BadNets: {title}", fontsize=10)
    ax.legend(fontsize=8)
    t = {k: {"acc": r.summary["acc"], "asr": r.summary["asr"]} for k, r in records.items()}
    number = "ACC/ASR " + ", ".join(f"{k} {pct(v['acc'])}/{pct(v['asr'])}" for k, v in t.items())
    return Drawn(fig, number, bool(check({i: v for i, v in enumerate(t.values())})), {"table": t})
