"""Explorers for the notebooks: ipywidgets controls over a matplotlib figure, each a function of records (nothing here trains).

Every explorer has ``widget`` (what a notebook displays; the explorer displays itself too),
its controls as attributes, an ``image`` (the figure as PNG, redrawn on every change), a
``label`` (the live numbers) and ``state``, what it last drew (counts, rates), which is
what the tests read. A callback only slices precomputed arrays and redraws: per-epoch
values are cached on first use, Jenks breaks are read from the record, never recomputed.
"""
from __future__ import annotations

import io
import time
from typing import Any, Mapping

import numpy as np
import torch

from .analysis import clean_hard_mask, detection_auroc, isolation_rates
from .defenses.policies import class_agnostic_loss_split, class_aware_loss_split, meta_split
from .records import Record
from .style import DEFENSE_COLORS, FULL, POOL_COLORS, SINGLE, rate, theme

__all__ = ["LOSSES", "LossExplorer", "SplitExplorer", "MetaSplitExplorer", "PIPDExplorer"]

# per-sample losses a record may log each epoch, and what they are
LOSSES = {
    "train_loss": "CE (training step, augmented views)",
    "l1_loss": "SCE (ASD's L1, un-augmented)",
    "sce_loss": "SCE (DBD's filter, un-augmented)",
    "ce_loss": "CE (DBD's filter with head_loss=ce)",
    "lga_loss": "CE under LGA (ABL / PIPD isolation)",
}
COLOURS = POOL_COLORS  # the house colours (asdkit.style): one colour per pool kind in every figure


def _class_count(record: Record) -> int:
    return int(max(record.arrays["true_label"].max(), record.arrays["observed_label"].max())) + 1


def _hard_fraction(record: Record) -> float:
    return float(record.config.get("defense_args", {}).get("clean_hard_fraction", 0.1))


class Explorer:
    """Controls, a figure rendered to an ``ipywidgets.Image``, and a live HTML label."""

    figsize = (SINGLE, 3.6)

    def __init__(self) -> None:
        import ipywidgets as w
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.w = w
        theme()
        self.figure = Figure(figsize=self.figsize, dpi=90, layout="constrained")
        FigureCanvasAgg(self.figure)
        self.image = w.Image(format="png")
        self.image.add_class("asdkit-plot")
        self.label = w.HTML()
        self.label.add_class("asdkit-label")
        self.state: dict[str, Any] = {}
        self.seconds = 0.0  # how long the last callback took (data + drawing + PNG)

    def _controls(self) -> list:
        raise NotImplementedError

    def _draw(self) -> None:
        raise NotImplementedError

    @property
    def widget(self):
        if not hasattr(self, "_box"):
            self._box = self.w.VBox([self.w.HBox(self._controls()), self.image, self.label])
        return self._box

    def _watch(self, *controls) -> None:
        for c in controls:
            c.observe(lambda change: self.update(), names="value")

    def update(self) -> None:
        """Redraw for the controls' current values (what every control's callback does)."""
        t0 = time.perf_counter()
        self.figure.clear()
        self._draw()
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png")
        self.image.value = buf.getvalue()
        self.seconds = time.perf_counter() - t0

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live widget for Jupyter, and its first state as a static image and label for a page without a kernel (the book)."""
        import base64

        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        png = base64.b64encode(self.image.value).decode()
        bundle["image/png"] = png
        bundle["text/html"] = (f'<div class="asdkit-static"><img src="data:image/png;base64,{png}" alt="{type(self).__name__}, first state"/>'
                               f"<div>{self.label.value}</div></div>")
        return bundle


class LossExplorer(Explorer):
    """Per-sample loss histograms by epoch (002 Fig. 1, 003 Fig. 1): run, loss, colouring, log counts; AUROC of −loss live."""

    def __init__(self, records: Mapping[str, Record], *, bins: int = 60) -> None:
        super().__init__()
        if isinstance(records, Record):
            raise ValueError("LossExplorer takes records by name, e.g. LossExplorer({'asd': record}); got one record without a name.")
        if not records:
            raise ValueError("LossExplorer needs at least one record")
        self.records, self.bins, self._cache = dict(records), bins, {}
        w = self.w
        self.run = w.Dropdown(options=list(self.records), description="run")
        self.loss = w.Dropdown(description="loss")
        self.colour = w.Dropdown(options=["poisoned / clean", "clean-hard", "in D_C"], description="colour by")
        self.log = w.Checkbox(value=False, description="log counts")
        self.epoch = w.IntSlider(min=1, max=1, value=1, description="epoch", continuous_update=True)
        self.epoch.add_class("asdkit-epoch")
        self._busy = False
        self._sync_run()
        self.run.observe(lambda c: self._changed(self._sync_run), names="value")
        self.loss.observe(lambda c: self._changed(self._sync_epochs), names="value")
        self._watch(self.colour, self.log, self.epoch)
        self.update()

    def _controls(self):
        return [self.w.VBox([self.run, self.loss, self.colour]), self.w.VBox([self.epoch, self.log])]

    def _changed(self, sync) -> None:
        """A control that changes others: sync them without redrawing for each, then redraw once."""
        if self._busy:
            return
        self._busy = True
        try:
            sync()
        finally:
            self._busy = False
        self.update()

    def update(self) -> None:
        if not self._busy:
            super().update()

    def _sync_run(self) -> None:
        rec = self.records[self.run.value]
        names = [n for n in LOSSES if n in rec.epoch_arrays]
        if not names:
            raise ValueError(f"{rec!r} logs no per-sample loss ({sorted(LOSSES)})")
        self.loss.options = [(LOSSES[n], n) for n in names]
        self.loss.value = names[0]
        self._sync_epochs()

    def _logged_epochs(self) -> list[int]:
        return self.records[self.run.value].logged_epochs(self.loss.value)

    def _sync_epochs(self) -> None:
        epochs = self._logged_epochs()
        self.epoch.min, self.epoch.max = 1, len(epochs)
        self.epoch.value = min(self.epoch.value, len(epochs))

    def _data(self, run: str, loss: str, k: int) -> dict[str, Any]:
        """Loss values, masks, fixed bins and AUROC of the k-th logged epoch (cached)."""
        key = (run, loss, k)
        if key not in self._cache:
            rec = self.records[run]
            epochs = rec.logged_epochs(loss)
            e = epochs[k]
            values = rec.epoch_array(loss, e).numpy()
            if (run, loss) not in self._cache:  # one x-range for every epoch of a run and loss: losses are seen to shrink
                top = max(float(np.quantile(rec.epoch_array(loss, i).numpy(), 0.995)) for i in epochs)
                self._cache[run, loss] = np.linspace(0.0, max(top, 1e-3), self.bins + 1)
            poison = rec.arrays["is_poison"].numpy()
            pool = rec.epoch_array("clean_pool", e).numpy() if "clean_pool" in rec.epoch_arrays and rec.epoch_arrays["clean_pool"][e].numel() else None
            self._cache[key] = {
                "epoch": e, "values": values, "poison": poison, "pool": pool,
                "hard": clean_hard_mask(values, poison, _hard_fraction(rec)).numpy(),
                "auroc": detection_auroc(-values, poison) if 0 < poison.sum() < len(poison) else float("nan"),
            }
        return self._cache[key]

    def _groups(self, d: dict[str, Any]) -> dict[str, np.ndarray]:
        poison = d["poison"]
        if self.colour.value == "clean-hard":
            return {"clean": ~poison & ~d["hard"], "clean-hard": d["hard"], "poisoned": poison}
        if self.colour.value == "in D_C":
            if d["pool"] is None:
                return {"no D_C logged at this epoch": np.ones_like(poison)}
            return {"in D_C": d["pool"], "not in D_C": ~d["pool"]}
        return {"clean": ~poison, "poisoned": poison}

    def _draw(self) -> None:
        run, loss, k = self.run.value, self.loss.value, self.epoch.value - 1
        d, bins = self._data(run, loss, k), self._cache[run, loss]
        ax = self.figure.add_subplot()
        groups = self._groups(d)
        counts = {}
        clipped = np.clip(d["values"], bins[0], bins[-1])
        for name, mask in groups.items():
            h, _ = np.histogram(clipped[mask], bins=bins)
            counts[name] = h
            ax.stairs(h, bins, fill=True, alpha=0.55, color=COLOURS.get(name, "0.5"), label=f"{name} ({int(mask.sum()):,})")
        if self.log.value:
            ax.set_yscale("symlog", linthresh=1)
        ax.set(xlabel=f"{LOSSES[loss]} (clipped at the 99.5th percentile)", ylabel="samples",
               title=f"{run}: epoch {d['epoch'] + 1} of the run")
        ax.legend(fontsize=8)
        in_pool = "" if d["pool"] is None else f" · poisoned in D_C: {int((d['pool'] & d['poison']).sum())}"
        low, high = ("—", "—") if np.isnan(d["auroc"]) else (f"{d['auroc']:.3f}", f"{1 - d['auroc']:.3f}")  # no poison: undefined
        self.label.value = (f"<b>AUROC of the loss as a poison detector, lowest loss flagged: <span class='asdkit-auroc'>{low}</span></b>"
                            f" · highest loss flagged: {high} (1 = a perfect split; early in undefended training the poison"
                            f" has the lowest losses, under ASD or DBD the highest){in_pool}")
        self.state = {"run": run, "loss": loss, "epoch": d["epoch"], "auroc": d["auroc"], "counts": counts, "bins": bins}


class SplitExplorer(Explorer):
    """ASD's loss-guided split at one epoch (002 §4.1): which samples a split rate puts in D_C, with TPR, FPR and poisoned-in-D_C per class."""

    figsize = (SINGLE, 3.4)

    def __init__(self, record: Record, *, epoch: int = -1, loss: str | None = None, class_names: list[str] | None = None) -> None:
        super().__init__()
        loss = loss or next((n for n in ("l1_loss", "sce_loss", "train_loss", "lga_loss") if n in record.epoch_arrays), None)
        if loss is None:
            raise ValueError(f"{record!r} logs no per-sample loss to split ({sorted(LOSSES)})")
        logged = record.logged_epochs(loss)
        if not -len(logged) <= epoch < len(logged):
            raise ValueError(f"SplitExplorer's 'epoch' must be an int in [{-len(logged)}, {len(logged) - 1}] ({len(logged)} epochs logged "
                             f"{loss}). Got {epoch} instead.")
        self.record, self.loss_name, self.at = record, loss, logged[epoch]
        self.losses = record.epoch_array(loss, self.at)
        self.labels = record.arrays["observed_label"].long()
        self.poison = record.arrays["is_poison"].bool()
        self.k = _class_count(record)
        self.names = class_names or [str(c) for c in range(self.k)]
        w = self.w
        self.rate = w.FloatSlider(min=0.05, max=0.95, step=0.05, value=0.5, description="split rate α", readout_format=".2f")
        self.rate.add_class("asdkit-rate")
        self.mode = w.ToggleButtons(options=["class-agnostic", "class-aware"], value="class-agnostic", description="split")
        self._watch(self.rate, self.mode)
        self.update()

    def _controls(self):
        return [self.rate, self.mode]

    def pool(self) -> torch.Tensor:
        """D_C for the current controls, by ASD's own split policies."""
        n, r = len(self.losses), self.rate.value
        if self.mode.value == "class-agnostic":
            return class_agnostic_loss_split(self.losses, rate=r)
        return class_aware_loss_split(self.losses, self.labels, seeds=torch.zeros(0, dtype=torch.long), per_class=round(r * n / self.k))

    def _draw(self) -> None:
        pool = self.pool()
        flagged = ~pool
        per = {"clean in D_C": [], "poisoned in D_C": [], "tpr_per_class": [], "fpr_per_class": []}
        for c in range(self.k):
            m = self.labels == c
            per["clean in D_C"].append(int((pool & m & ~self.poison).sum()))
            per["poisoned in D_C"].append(int((pool & m & self.poison).sum()))
            p, b = m & self.poison, m & ~self.poison
            per["tpr_per_class"].append(float((flagged & p).sum() / p.sum()) if p.any() else float("nan"))
            per["fpr_per_class"].append(float((flagged & b).sum() / b.sum()) if b.any() else float("nan"))
        rates = isolation_rates(flagged, self.poison)
        tpr, fpr = rates["tpr"], rates["fpr"]
        ax = self.figure.add_subplot()
        x = np.arange(self.k)
        ax.bar(x, per["clean in D_C"], color=COLOURS["clean"], label="clean in D_C")
        ax.bar(x, per["poisoned in D_C"], bottom=per["clean in D_C"], color=COLOURS["poisoned"], label="poisoned in D_C")
        ax.set_xticks(x, self.names, fontsize=8, rotation=30 if max(map(len, self.names)) > 3 else 0)
        ax.set(ylabel="samples in D_C (by observed label)", title=f"{self.mode.value} split at α = {self.rate.value:.2f}, epoch {self.at + 1} ({self.loss_name})")
        ax.legend(fontsize=8)
        rows = "".join(f"<tr><td>{self.names[c]}</td><td>{per['poisoned in D_C'][c]}</td><td>{rate(per['tpr_per_class'][c])}</td><td>{rate(per['fpr_per_class'][c])}</td></tr>"
                       for c in range(self.k))
        self.label.value = (f"<b>D_C: {int(pool.sum()):,} samples · poisoned in D_C: <span class='asdkit-poisoned'>{int((pool & self.poison).sum())}</span>"
                            f" · TPR {tpr:.1%} · FPR {fpr:.1%}</b> (isolated = not in D_C)"
                            f"<details><summary>per class</summary><table><tr><th>class</th><th>poisoned in D_C</th><th>TPR</th><th>FPR</th></tr>{rows}</table></details>")
        self.state = {"pool": pool, "tpr": tpr, "fpr": fpr, "poisoned_in_pool": int((pool & self.poison).sum()), **per}


class MetaSplitExplorer(Explorer):
    """002 Fig. 3 at the stage-3 entry: L1 loss against loss reduction, poisoned and clean-hard highlighted, the γ cut movable."""

    figsize = (SINGLE, 4.0)

    def __init__(self, record: Record, *, points: int = 4000) -> None:
        super().__init__()
        stages = record.metric("stage")
        if 3 not in stages or "loss_reduction" not in record.epoch_arrays:
            raise ValueError(f"{record!r} has no meta-split epoch (stage 3 with loss_reduction logged).")
        self.record, self.at = record, stages.index(3)
        self.loss = record.epoch_array("l1_loss", self.at)
        self.reduction = record.epoch_array("loss_reduction", self.at)
        self.poison = record.arrays["is_poison"].bool()
        self.hard = clean_hard_mask(self.loss, self.poison, _hard_fraction(record))
        g = torch.Generator().manual_seed(0)  # which points are drawn; every count below uses all of them
        plain = (~self.poison & ~self.hard).nonzero().squeeze(1)
        self.drawn = {"clean": plain[torch.randperm(len(plain), generator=g)[:points]].numpy(),
                      "clean-hard": self.hard.nonzero().squeeze(1).numpy()[: points // 2],
                      "poisoned": self.poison.nonzero().squeeze(1).numpy()[: points // 2]}
        self.auroc = {"loss": detection_auroc(self.loss.numpy(), self.poison.numpy()),  # high loss ⇒ poisoned, as analysis.meta_split_separation
                      "reduction": detection_auroc(self.reduction.numpy(), self.poison.numpy())}
        gamma = float(record.config.get("defense_args", {}).get("gamma", 0.5))
        self.gamma = self.w.FloatSlider(min=0.05, max=0.95, step=0.05, value=round(gamma * 20) / 20, description="γ", readout_format=".2f")
        self.gamma.add_class("asdkit-gamma")
        self._watch(self.gamma)
        self.update()

    def _controls(self):
        return [self.gamma]

    def _draw(self) -> None:
        pool = meta_split(self.reduction, rate=self.gamma.value)
        cut = float(self.reduction[pool].max())
        ax = self.figure.add_subplot()
        loss, red = self.loss.numpy(), self.reduction.numpy()
        for name, idx in self.drawn.items():
            ax.scatter(loss[idx], red[idx], s=4, alpha=0.5, color=COLOURS[name], label=name, rasterized=True)
        ax.axhline(cut, color="k", lw=1, ls="--", label=f"γ cut: the {self.gamma.value:.0%} least reduced → D_C")
        ax.set(xlabel="L1 loss of f_θ (SCE)", ylabel="loss reduction L1(θ) − L1(θ')", title=f"meta-split at epoch {self.at + 1} (stage-3 entry)")
        ax.legend(fontsize=8, markerscale=3)
        poisoned, hard = int((pool & self.poison).sum()), int((pool & self.hard).sum())
        self.label.value = (f"<b>D_C: {int(pool.sum()):,} · poisoned in D_C: <span class='asdkit-poisoned'>{poisoned}</span> of {int(self.poison.sum())}"
                            f" · clean-hard in D_C: {hard} of {int(self.hard.sum())}</b> · AUROC as poison detector: "
                            f"L1 loss {self.auroc['loss']:.3f}, loss reduction {self.auroc['reduction']:.3f} (high ⇒ poisoned)")
        self.state = {"pool": pool, "cut": cut, "poisoned_in_pool": poisoned, "hard_in_pool": hard, **{f"auroc_{k}": v for k, v in self.auroc.items()}}


class PIPDExplorer(Explorer):
    """PIPD's rounds (003 §3.2): per-channel discrepancy of a layer with the top-K marked, the score histogram with its Jenks break, TPR/FPR."""

    figsize = (FULL, 3.6)

    def __init__(self, record: Record) -> None:
        super().__init__()
        self.rounds = [e for e, m in enumerate(record.metrics) if m.get("phase") == "isolation"]
        if not self.rounds:
            raise ValueError(f"{record!r} has no isolation rounds (not a PIPD record?)")
        self.record = record
        self.poison = record.arrays["is_poison"].numpy()
        layers = [k.split("/", 1)[1] for k in record.epoch_arrays if k.startswith("discrepancy/")]
        w = self.w
        self.round = w.IntSlider(min=1, max=len(self.rounds), value=1, description="round")
        self.round.add_class("asdkit-round")
        self.layer = w.Dropdown(options=layers, value=layers[-1], description="layer")
        self._watch(self.round, self.layer)
        self.update()

    def _controls(self):
        return [self.round, self.layer]

    def _draw(self) -> None:
        e = self.rounds[self.round.value - 1]
        m, rec = self.record.metrics[e], self.record
        disc = rec.epoch_array(f"discrepancy/{self.layer.value}", e).numpy()
        chosen = rec.epoch_array(f"channels/{self.layer.value}", e).long().numpy()
        score = rec.epoch_array("pipd_score", e).numpy()
        ax1, ax2 = self.figure.subplots(1, 2)
        colours = np.where(np.isin(np.arange(len(disc)), chosen), DEFENSE_COLORS["pipd"], "0.7")
        ax1.bar(np.arange(len(disc)), disc, color=colours, width=1.0)
        ax1.set(xlabel="channel", ylabel="discrepancy (Eq. 4)", title=f"{self.layer.value}: the top {len(chosen)} of {len(disc)} channels coloured")
        bins = np.linspace(score.min(), score.max(), 61)
        for name, mask in (("clean", ~self.poison), ("poisoned", self.poison)):
            ax2.hist(score[mask], bins=bins, alpha=0.6, color=COLOURS[name], label=name)
        ax2.axvline(m["jenks_break"], color="k", ls="--", lw=1, label="Jenks break")
        ax2.set_yscale("symlog", linthresh=1)
        ax2.set(xlabel="score (Eq. 7)", ylabel="samples", title=f"round {self.round.value}")
        ax2.legend(fontsize=8)
        self.label.value = (f"<b>round {self.round.value}: isolated {m['isolated']:,} · TPR <span class='asdkit-tpr'>{m['tpr']:.1%}</span>"
                            f" · FPR {m['fpr']:.2%}</b> · |P_p| {int(rec.epoch_array('p_p', e).sum()):,}, |P_b| {int(rec.epoch_array('p_b', e).sum()):,}")
        self.state = {"round": self.round.value, "layer": self.layer.value, "chosen": chosen, "tpr": m["tpr"], "fpr": m["fpr"],
                      "break": m["jenks_break"], "isolated": m["isolated"]}
