"""DBD's figures (004): t-SNE of supervised vs self-supervised features, SCE vs CE, poisoned examples, and DBD's two sweeps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..attacks import run_overrides
from ..data import display_name, second_dataset
from ..style import attack_name, panel, shades
from .common import LOW_ASR, bars, caveat, check, data_note, extras, figure, pct, run, same_data, title, truth
from .registry import Drawn, register



def _plt():
    import matplotlib.pyplot as plt

    return plt


# -- Fig. 1: t-SNE ---------------------------------------------------------------------------
def _tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(features.astype(np.float32))


def _tsne_needs(scale: str) -> dict:
    data = same_data(scale, "dbd")  # in 004 Fig. 1's order: (a)-(b) supervised, (c)-(d) self-supervised; BadNets, then label-consistent
    return {"supervised | badnets": run("none", "badnets", **data), "supervised | clb": run("none", "clb", **data, **extras("clb")),
            "self-supervised | badnets": run("dbd", "badnets"), "self-supervised | clb": run("dbd", "clb", **extras("clb"))}


def verdict_fig01(v: dict) -> list:
    share, out = v["poisoned_neighbours"], []
    for a in ("badnets", "clb"):
        sup, ssl = share[f"supervised | {a}"], share[f"self-supervised | {a}"]
        out.append(check(f"{attack_name(a)}: under supervised learning the poisoned points cluster (over half a poisoned point's "
                         "10 nearest neighbours poisoned)", sup > 0.5, f"{pct(sup)}"))
        out.append(check(f"{attack_name(a)}: under self-supervised learning they cluster less (fewer poisoned neighbours)", ssl < sup,
                         f"{pct(ssl)} vs {pct(sup)} supervised"))
    return out


@register("dbd_fig01", caption="t-SNE of backbone features: supervised vs self-supervised, BadNets and label-consistent",
          claim="supervised: poisoned samples form their own cluster; self-supervised: they sit with their true class",
          needs=_tsne_needs, verdict=verdict_fig01)
def dbd_fig01(records, scale):
    from ..analysis import feature_neighbourhoods

    fig, axes = figure("full", 1, 4, height=3.9)
    agree, share = {}, {}
    for letter, ax, (label, rec) in zip("abcd", axes[0], records.items()):
        kind, attack = label.split(" | ")
        snap = "features" if kind == "supervised" else "simclr_features"
        s = rec.snapshots[snap]
        index = s["index"].numpy()
        poison = rec.arrays["is_poison"].numpy()[index].astype(bool)
        true = rec.arrays["true_label"].numpy()[index]
        xy = _tsne(s["features"].float().numpy(), seed=rec.config["seed"])
        points = ax.scatter(xy[~poison, 0], xy[~poison, 1], c=true[~poison], cmap="tab10", vmin=-0.5, vmax=9.5, s=3, alpha=0.6)
        ax.scatter(xy[poison, 0], xy[poison, 1], c="k", marker="x", s=12, lw=0.8, label="poisoned")
        share[label] = _poisoned_neighbours(s["features"].float().numpy(), poison)
        agree[label] = feature_neighbourhoods(rec, snap)
        panel(ax, letter, f"{kind}, {attack_name(attack)}\npoisoned neighbours {pct(share[label])}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="lower right")
    fig.colorbar(points, ax=axes[0].tolist(), ticks=range(10), shrink=0.8, label="true class").ax.set_yticklabels(_class_names(records))
    title(fig, "DBD Fig. 1", "t-SNE of the backbone's features (a poisoned point's share of poisoned points among its 10 nearest "
                             "neighbours, cosine)", note=data_note(records))
    parts = [f"{k}: {pct(v)}" for k, v in share.items()]
    return Drawn(fig, "share of poisoned points among a poisoned point's 10 nearest neighbours (cosine): " + "; ".join(parts),
                 {"poisoned_neighbours": share, "agreement": agree})


def _class_names(records: dict) -> list[str]:
    """The data set's class names (Fashion-MNIST's, or the indices)."""
    from ..data import class_names

    rec = next(iter(records.values()))
    names = class_names(rec.config["dataset"])
    return list(names)[:10] if names else [str(k) for k in range(10)]


def _poisoned_neighbours(features: np.ndarray, poison: np.ndarray, k: int = 10) -> float:
    """004 Fig. 1's clusters as a number: the mean share of poisoned points among a poisoned point's k nearest (cosine) neighbours."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(features.astype(np.float64))
    _, idx = nn.kneighbors(features[poison].astype(np.float64))
    return float(poison[idx[:, 1:]].mean())


# -- Fig. 3: SCE vs CE ------------------------------------------------------------------------
def verdict_fig03(v: dict) -> list:
    sep = v["separation"]
    return [check("the head trained with SCE puts more distance between the poisoned and benign losses than the one trained with CE "
                  "(gap of the normalised means)", sep["SCE"]["normalised_gap"] > sep["CE"]["normalised_gap"],
                  f"SCE {sep['SCE']['normalised_gap']:.3f} vs CE {sep['CE']['normalised_gap']:.3f}")]


@register("dbd_fig03", caption="normalised stage-2 losses of heads trained with SCE vs CE, BadNets 20 %", verdict=verdict_fig03,
          claim="SCE widens the gap between poisoned and benign losses",
          needs=lambda s: {"SCE": run("dbd", "badnets", rate=0.2), "CE": run("dbd", "badnets", rate=0.2, defense__head_loss="ce")})
def dbd_fig03(records, scale):
    from ..analysis import stage2_separation
    from .common import hist_groups

    fig, axes = figure("full", 1, 2)
    sep = {}
    for letter, ax, (name, rec) in zip("ab", axes[0], records.items()):
        poison, _ = truth(rec)
        loss = rec.snapshots["stage2"][name.lower()].double().numpy()
        norm = (loss - loss.min()) / max(loss.max() - loss.min(), 1e-12)
        sep[name] = stage2_separation(rec)
        hist_groups(ax, norm, {"clean": ~poison, "poisoned": poison}, xlabel=f"normalised {name} loss of the head")
        panel(ax, letter, f"head trained with {name}: gap of means {sep[name]['normalised_gap']:.3f}, AUROC {sep[name]['auroc']:.3f}")
    title(fig, "DBD Fig. 3", "the stage-2 losses of a head trained with SCE and with CE, BadNets 20 %")
    number = (f"gap of the normalised means SCE {sep['SCE']['normalised_gap']:.3f} vs CE {sep['CE']['normalised_gap']:.3f}; "
              f"AUROC {sep['SCE']['auroc']:.3f} vs {sep['CE']['auroc']:.3f}")
    return Drawn(fig, number, {"separation": sep})


# -- Figs. 4 and 5: poisoned examples ---------------------------------------------------------------
GRID_ATTACKS = ("badnets", "blend", "wanet", "sig", "trojan", "clb", "iab", "refool", "adaptive-patch", "asd-adaptive-grad", "asd-adaptive-feat")


def _grid_needs(scale: str, dataset: str | None = None) -> dict:
    """The prepared attacks' poison is built by a no-defense run against each (cached in runs/cache), so drawing never trains."""
    from ..attacks import ATTACKS

    if dataset is not None:
        return {}
    return {a: run("none", a, **extras(a))
            for a in GRID_ATTACKS if ATTACKS[a].prepared is not None}


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


def _draw_grid(configs: dict, text: str, paper_figure: str, root=None) -> Drawn:
    examples = {a: poisoned_examples(c, root=root) for a, c in configs.items()}
    cols = len(examples)
    fig, axes = figure("full", 4, cols, height=1.55)
    res = {}
    for j, (a, (clean, pois, labels)) in enumerate(examples.items()):
        diff = np.abs(pois.astype(np.int16) - clean.astype(np.int16))
        res[a] = float(diff.mean())
        gray = clean.shape[1] == 1
        for i in range(3):
            axes[i, j].imshow(_image(pois[i]), cmap="gray" if gray else None, vmin=0, vmax=255)
            axes[i, j].set_xlabel(labels[i], labelpad=1)
        # magnified so that the 95th percentile of the changed pixels is full scale: a saturating trigger (CLB's corner) no longer hides
        # faint noise (CLB's PGD perturbation); the top row's image
        changed = diff[0][diff[0] > 0]
        gain = 255.0 / max(1.0, float(np.percentile(changed, 95)) if changed.size else 1.0)
        amp = np.clip(diff[0] * gain, 0, 255).astype(np.uint8)
        axes[3, j].imshow(_image(amp), cmap="magma" if gray else None)
        axes[3, j].set_xlabel(f"×{gain:.0f}" + (", clipped" if gain > 1.5 else ""), labelpad=1)
        axes[0, j].set_title(attack_name(a).replace(" (", "\n("))
        for i in range(4):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    axes[3, 0].set_ylabel("|top − clean|")
    title(fig, paper_figure, text)
    number = "mean |residual| per pixel (0-255): " + ", ".join(f"{attack_name(a)} {v:.1f}" for a, v in res.items())
    return Drawn(fig, number, {"residual": res})


def _grid_configs(scale: str, dataset: str | None = None) -> dict:
    from ..config import make_config

    out = {}
    for a in GRID_ATTACKS:
        ov = {"attack": a, **run_overrides(a)}
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
    return _draw_grid(_grid_configs(scale), "poisoned training images of every attack; bottom row: the top image's residual, magnified",
                      "DBD Fig. 4", root=_root(records))


def _root(records: dict):
    rec = next(iter(records.values()), None)
    return None if rec is None or rec.path is None else rec.path.parent.parent


@register("dbd_fig05", caption="poisoned examples on a second data set (CIFAR-10 or GTSRB; the paper: VGGFace2)",
          claim="the same grid on a second data set", needs=lambda s: {},
          reduced="the attacks that need no build (the prepared ones are built against a clean twin of the run's own data)")
def dbd_fig05(records, scale):
    ds = second_dataset()
    return _draw_grid(_grid_configs(scale, ds), f"poisoned images of {display_name(ds)} (the paper: VGGFace2; bottom row: the top "
                      "image's residual, magnified)", "DBD Fig. 5")


# -- Figs. 6 and 7: DBD's sweeps --------------------------------------------------------------------
FILTER = (0.3, 0.5, 0.7, 0.9)
POISON = (0.05, 0.1, 0.2)


def verdict_fig06(v: dict) -> list:
    low = {k: x for k, x in v["table"].items() if x["value"] <= 0.5}
    return [check(f"the ASR stays near 0 (under 5 %) until α is large: at α = {x['value']}", x["asr"] < LOW_ASR, pct(x["asr"]))
            for x in low.values()]


@register("dbd_fig06", caption="DBD's filtering rate α", claim="ASR stays near 0 until α is large", verdict=verdict_fig06,
          needs=lambda s: {f"α = {r}": run("dbd", "badnets", defense__filter_rate=r) for r in (FILTER if s != "smoke" else (0.5, 0.9))},
          reduced="BadNets 10 %, α 0.3-0.9 (paper 0-1 on three attacks)")
def dbd_fig06(records, scale):
    return _sweep(records, "DBD Fig. 6", "the filtering rate α, BadNets", "filtering rate α",
                  {k: float(k.split("= ")[1]) for k in records})


def verdict_fig07(v: dict) -> list:
    return [check(f"defended at {k} poison (ASR under 5 %)", x["asr"] < LOW_ASR, pct(x["asr"])) for k, x in v["table"].items()]


@register("dbd_fig07", caption="DBD under a growing poisoning rate", claim="defended up to 20 %", verdict=verdict_fig07,
          needs=lambda s: {f"{int(100 * r)} %": run("dbd", "badnets", rate=r) for r in (POISON if s != "smoke" else (0.1, 0.2))},
          reduced="BadNets 5-20 % (paper 1-20 % on three attacks)")
def dbd_fig07(records, scale):
    return _sweep(records, "DBD Fig. 7", "the poisoning rate, BadNets", "poisoning rate", {k: float(k[:-2]) / 100 for k in records})


def _sweep(records: dict, paper_figure: str, text: str, xlabel: str, values: dict) -> Drawn:
    fig, axes = figure("single", height=3.4)
    ax = axes[0, 0]
    labels = [k.split("= ")[-1] for k in records]
    hatched = {"ASR": [bool(caveat(r.summary)) for r in records.values()]}
    bars(ax, labels, {"ACC": [r.summary["acc"] for r in records.values()], "ASR": [r.summary["asr"] for r in records.values()]},
         ylabel="%", colors=shades("dbd", 2), hatched=hatched)
    ax.set_xlabel(xlabel)
    ax.legend(loc="upper left", ncol=2, title="hatched: ASR means little" if any(hatched["ASR"]) else None)
    title(fig, paper_figure, text)
    t = {k: {"acc": r.summary["acc"], "asr": r.summary["asr"], "value": values[k]} for k, r in records.items()}
    number = "ACC/ASR " + ", ".join(f"{k} {pct(v['acc'])}/{pct(v['asr'])}" for k, v in t.items())
    return Drawn(fig, number, {"table": t})
