"""Command line: ``asdkit run``, ``options``, ``data``, ``course``, ``figures``, ``sweep`` and ``notebooks``.

Every option is checked before any data is loaded or any model is trained. ``course prepare``,
``figures`` and ``sweep`` are front-ends of one planner (:mod:`asdkit.planner`) with the same
``--jobs``, ``--launcher``, ``--dry-run`` and ``--status``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

__all__ = ["main"]

_RUN_HELP = """\
Train a model on a poisoned data set, with or without a defense, and write a record.

The four scales are presets of one config (the algorithm never changes, only sizes,
budgets and schedules):
  smoke      seconds: 2,000 Fashion-MNIST images, a narrow network (tests, CI)
  classroom  minutes on a 2-core CPU: all of Fashion-MNIST, the compact ResNet (default);
             a budget of 180,000 sample visits, so a smaller --dataset trains more epochs
  lab        at most 20 minutes a run on a 2-core CPU: 5,000 Fashion-MNIST images for every
             defense, each image seen about as often as in the papers (README, "The lab scale")
  paper      the papers' setting: CIFAR-10, ResNet-18, 200 epochs, SGD 0.1 (use a GPU)

Anything else is a config field: --set epochs=5 --set lr=0.01 --set attack.size=4
--set attack.location=lower-right --set defense.NAME=VALUE. Every field and option is
listed by `asdkit options` and `asdkit options DEFENSE` (or `asdkit run --defense asd
--options`), and checked before any data loads. A run whose config was run
before is reused (use --force to train again); an interrupted run resumes from its last
finished epoch. Records live in ./runs (or $ASDKIT_RUNS).

examples:
  asdkit run                                   # BadNets 10%, no defense, classroom scale
  asdkit run --attack blend --rate 0.05 --target 3
  asdkit run --scale paper --device cuda       # CIFAR-10 + ResNet-18, as in the papers
  asdkit run --dataset ../my.npz --set epochs=10 --json
  asdkit run --defense asd --scale lab --seed 0-2   # three seeds, then their spread
"""


def _build_parser() -> argparse.ArgumentParser:
    from .attacks import ATTACKS, PLANNED
    from .config import SCALES
    from .data import DATASETS
    from .defenses import DEFENSES, PLANNED_DEFENSES

    parser = argparse.ArgumentParser(prog="asdkit", description="Training-time backdoor defenses, for teaching and reproducing the papers.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("run", help="train (and defend) one configuration", description=_RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help=f"{', '.join(DATASETS)}, a .npz file or an image folder (default: the scale's)")
    p.add_argument("--attack", help=f"{', '.join(ATTACKS)}" + (f" (later: {', '.join(PLANNED)})" if PLANNED else "") + "; default badnets")
    p.add_argument("--rate", type=float, help="poison rate in [0, 1): of the whole set (poison-label) or of the target class (clean-label); 0 = the clean twin (its ASR is the floor)")
    p.add_argument("--target", type=int, help="target class index (default: 0 classroom, 3 paper)")
    p.add_argument("--label-mode", choices=["all2one", "all2all"], help="all2all relabels y -> (y + 1) mod C")
    p.add_argument("--defense", default="none", help=", ".join(DEFENSES) + (f" (later: {', '.join(PLANNED_DEFENSES)})" if PLANNED_DEFENSES else ""))
    p.add_argument("--scale", default="classroom", choices=SCALES, help="preset: smoke, classroom (default), lab or paper")
    p.add_argument("--seed", help="seed of the poison selection, the trigger, the initialisation and the batches; "
                   "several (0,1,2 or 0-4): one run each, then their median, range and lowest per-class accuracy")
    p.add_argument("--device", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--model", help="compact, resnet18, vgg11, mobilenet_v2 or densenet121")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help="any other config field; repeatable")
    p.add_argument("--force", action="store_true", help="train again even if a finished record exists")
    p.add_argument("--rebuild-poison", action="store_true", help="build a prepared attack's poison (CLB) anew instead of reusing its cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="end with one line of JSON (acc, asr, seconds, record, ...)")
    p.add_argument("--options", action="store_true", help="print the defense's options (accepted values, default per scale) and exit")

    o = sub.add_parser("options", help="the config fields, a defense's options (accepted values, default per scale, meaning) or an attack's")
    o.add_argument("defense", nargs="?", help=f"a defense ({', '.join(DEFENSES)}) or an attack ({', '.join(ATTACKS)}); omitted: the config fields")

    d = sub.add_parser("data", help="where each data set is, and how to get the missing ones")
    d.add_argument("--json", action="store_true")

    c = sub.add_parser("course", help="the runs the notebooks read: list them, or train the missing ones (resumable)")
    c.add_argument("action", choices=["list", "prepare"], help="list: each run and whether it is done; prepare: train what is missing")
    c.add_argument("--scale", choices=SCALES, help="default $ASDKIT_SCALE, else classroom")
    c.add_argument("--only", help="comma-separated run names (see `asdkit course list`)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    _launcher_arguments(c)

    f = sub.add_parser("figures", help="regenerate the papers' figures (and figures/README.md) from run records, training what is missing")
    f.add_argument("--scale", choices=SCALES, default="classroom", help="the runs' scale (default classroom)")
    f.add_argument("--only", help="comma-separated figure keys, e.g. asd_fig03,pipd_fig04 (default: all; `--list` names them)")
    f.add_argument("--out", help="folder of the PNGs and README (default figures/ at classroom scale, figures-SCALE/ otherwise)")
    f.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the scale's)")
    f.add_argument("--no-train", action="store_true", help="draw only from existing records; a missing one is an error")
    f.add_argument("--available", action="store_true", help="train nothing; draw the figures whose records all exist, list the others")
    f.add_argument("--list", action="store_true", help="list every figure, the runs it reads at --scale and whether they exist, then exit")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    _launcher_arguments(f)

    w = sub.add_parser("sweep", help="a grid of configs (or the figures' runs): what is done, what is missing, and a launcher for the missing")
    w.add_argument("--scale", choices=SCALES, default="classroom")
    w.add_argument("--defense", help="comma list of defenses (default none)")
    w.add_argument("--attack", help="comma list of attacks")
    w.add_argument("--seed", help="0,1,2 or 0-4")
    w.add_argument("--rate", help="comma list of poison rates")
    w.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=V1,V2", help="any config field or option over values; repeatable")
    w.add_argument("--figures", metavar="KEYS", help="the runs these figures read (comma list, or 'all') instead of a grid")
    _launcher_arguments(w)
    w.add_argument("--device", help="the runs' device (default: the scale's)")
    w.add_argument("--quiet", action="store_true")

    r = sub.add_parser("results", help="the results tables: train what a result set is missing, read every record into "
                                        "results/results.csv and render the pages from it")
    r.add_argument("--set", dest="sets", help="comma list of result sets (default: all): " + ", ".join(_result_sets()))
    r.add_argument("--no-train", action="store_true", help="train nothing: read the records that exist and render")
    r.add_argument("--render", action="store_true", help="only re-render the pages and the README's headline from results/results.csv")
    r.add_argument("--out", default="results", help="the results folder (default results/)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    _launcher_arguments(r)

    n = sub.add_parser("notebooks", help="write student copies of the course notebooks (solution cells removed)")
    n.add_argument("--student", required=True, metavar="DIR", help="folder for the copies")
    n.add_argument("--source", metavar="DIR", help="folder of the notebooks (default: the course's)")
    return parser


def _result_sets() -> list[str]:
    from .results import SETS

    return list(SETS)


def _launcher_arguments(p: argparse.ArgumentParser) -> None:
    """The planner's options, the same for ``course prepare``, ``figures`` and ``sweep``."""
    p.add_argument("--launcher", choices=["local", "slurm", "ray"], default="local", help="local (here; --jobs > 1: a process pool), slurm (submitit job array), ray")
    p.add_argument("--jobs", type=int, default=1, help="local launcher: runs at a time (default 1, in this process)")
    p.add_argument("--dry-run", action="store_true", help="print what would be made, with the resources a run asks for, and exit")
    p.add_argument("--status", action="store_true", help="print each run's state (done / running / partial / failed / missing) and exit")
    p.add_argument("--partition", help="slurm: partition")
    p.add_argument("--time", type=int, default=240, help="slurm: time limit a run, minutes (a run past it is requeued and resumes)")
    p.add_argument("--gpus", type=float, default=None, help="GPUs a run (slurm: per job; ray: a fraction allowed); default 1 on slurm, 0 on ray")
    p.add_argument("--parallel", type=int, default=32, help="slurm: array parallelism")
    p.add_argument("--address", help="ray: the cluster's address (default: a local Ray)")
    p.add_argument("--cluster", help=argparse.SUPPRESS)  # submitit's cluster: local / debug (tests)


def _launcher_options(args: argparse.Namespace) -> dict:
    gpus = args.gpus if args.gpus is not None else (1.0 if args.launcher == "slurm" else 0.0)
    return {"partition": args.partition, "time": args.time, "gpus": gpus, "parallel": args.parallel, "address": args.address,
            "cluster": args.cluster}


def _plan_only(args: argparse.Namespace, configs: list) -> bool:
    """``--status`` and ``--dry-run``, the same for every front-end of the planner: print, and say whether that was all."""
    from . import planner
    from .records import runs_dir

    if args.jobs < 1:
        raise ValueError(f"The '--jobs' option must be an int in [1, inf). Got {args.jobs} instead.")
    if args.status:
        print("\n".join(planner.summary_lines(configs)))
        return True
    if not args.dry_run:
        return False
    todo = planner.launch(configs, launcher=args.launcher, dry_run=True)
    print("\n".join(planner.summary_lines(configs)))
    gpus = _launcher_options(args)["gpus"]
    from .records import run_folder

    asked = {run_folder(c).name for c in configs}
    runs = sum(j["kind"] == "run" and run_folder(j["config"]).name in asked for j in todo)
    ask = {"local": f"{args.jobs} at a time on this machine", "ray": f"Ray tasks of {gpus:g} GPU(s) each at {args.address or 'a local Ray'}",
           "slurm": f"a job array (partition {args.partition or 'default'}, {args.time} min, {gpus:g} GPU(s) a job, {args.parallel} at a time)"}
    extra = len(todo) - runs
    print(f"would run {runs} of {len(configs)}" + (f" and make {extra} dependencies first (clean twins, built poisons)" if extra else "")
          + f" with the {args.launcher} launcher: {ask[args.launcher]}; records in {runs_dir()}")
    return True


def _options_table(defense: str | None) -> str:
    from .config import SCALES, config_fields, defense_spec
    from .options import format_table

    if defense is None:
        return format_table(config_fields(), SCALES, title="Config fields (--set NAME=VALUE; --scale, --defense, --attack... for the flags):")
    from .attacks import ATTACKS

    if defense in ATTACKS:
        return _attack_options(defense)
    spec = defense_spec(defense)
    if not spec.options:
        return f"{defense} takes no options."
    return format_table(spec.options, SCALES, title=f"Options of {defense} (--set defense.NAME=VALUE): {spec.summary}")


def _attack_options(name: str) -> str:
    """An attack's declared options: default (and the scales that change it; lab inherits classroom), accepted values, doc."""
    from .attacks import ATTACKS
    from .config import SCALES, _attack_scale_defaults

    cls = ATTACKS[name]
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    lines = [f"Options of the attack {name} (--set attack.NAME=VALUE): {doc}"]
    by_scale = {s: _attack_scale_defaults(name, s) for s in SCALES}
    for opt in cls.options:
        scaled = [f"{s} {values[opt.name]!r}" for s, values in by_scale.items() if opt.name in values]
        lines.append(f"  {opt.name:<14} default {opt.default!r}" + (f" · {' · '.join(scaled)}" if scaled else "") + f"; {opt.want}")
        lines.append(f"  {'':<14} {opt.doc}")
    if cls.prepared:
        how = "against the run's clean twin" if cls.prepared == "surrogate" else "from its own training or inputs"
        lines.append(f"Built {how} before the first run, cached in runs/cache/ and reused (--rebuild-poison builds it anew).")
    return "\n".join(lines)


def _cmd_options(args: argparse.Namespace) -> int:
    print(_options_table(args.defense))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .config import make_config, parse_assignments, parse_seeds
    from .planner import run, run_seeds

    if args.options:
        print(_options_table(args.defense))
        return 0

    seeds = parse_seeds(args.seed)
    flags = {name: getattr(args, name) for name in ("dataset", "attack", "rate", "target", "model", "label_mode", "device")}
    overrides = parse_assignments(args.assignments, args.defense, **flags, seed=seeds[0] if seeds else None)
    config = make_config(args.scale, defense=args.defense, overrides=overrides)
    if len(seeds) > 1:
        result = run_seeds(config, seeds, quiet=args.quiet, force=args.force, rebuild_poison=args.rebuild_poison)
        for seed, summary in result["runs"].items():
            print(f"seed {seed}: {_summary_line(replace(config, seed=seed), summary)}")
        print(_spread_line(config, result["over_seeds"]))
        if args.json:
            print(json.dumps(result))
        return 0
    summary = run(config, quiet=args.quiet, force=args.force, rebuild_poison=args.rebuild_poison)
    print(_summary_line(config, summary))
    from .defenses import DEFENSES

    if "tpr" in summary and DEFENSES[config.defense].isolated:
        print(f"  (TPR/FPR count as isolated: {DEFENSES[config.defense].isolated})")
    if args.json:
        print(json.dumps(summary))
    return 0


_SHOWN = {"acc", "asr", "seconds", "record", "epochs", "reused", "phases", "lowest_class_acc", "lowest_class", "target_class_acc", "asr_meaningful", "clean_target_rate",
          "precision", "precision_reason"}


def _asr_text(summary: dict) -> str:
    asr = summary.get("asr")
    text = "ASR n/a" if asr is None else f"ASR {asr:.2%}"
    from .analysis import asr_caveat

    caveat = asr_caveat(summary)
    return text + (f" (not meaningful: {caveat})" if caveat else "")


def _summary_line(config, summary: dict) -> str:
    """The one line a run prints: ACC, ASR (flagged when the target class is starved), lowest class, the defense's figures, time."""
    extra = "".join(f"  {k} {v:.3g}" if isinstance(v, float) else f"  {k} {v}" for k, v in summary.items()
                    if k not in _SHOWN and not k.startswith("seconds_"))
    low = f"  lowest class {summary['lowest_class']} {summary['lowest_class_acc']:.1%}" if "lowest_class_acc" in summary else ""
    reused = " (reused finished record)" if summary.get("reused") else ""
    if summary.get("reused") and summary.get("machine"):
        from .devices import resolve_device
        from .records import machine

        here = machine(resolve_device(config.device))
        if summary["machine"] != here:  # numbers repeat on one machine and thread count only
            reused = f" (reused a record trained on {summary['machine']}, not {here}: a run here could differ in the last digits)"
    return (f"{config.defense} vs {config.attack} {config.rate:.0%} on {config.dataset} ({config.scale}): "
            f"ACC {summary['acc']:.2%}  {_asr_text(summary)}{low}{extra}  {summary['epochs']} epochs  "
            f"{summary.get('precision', config.precision)}  {summary['seconds']:.0f} s{reused}  -> {summary['record']}")


def _durations(d: dict) -> str:
    """'4.9 min (4.8-9.0)' or '11 s (2-20)': the median and range of run times, in one unit."""
    if d["min"] >= 120:
        return f"{d['median'] / 60:.1f} min ({d['min'] / 60:.1f}-{d['max'] / 60:.1f})"
    return f"{d['median']:.0f} s ({d['min']:.0f}-{d['max']:.0f})"


def _spread_line(config, spread: dict) -> str:
    """Several seeds in one line: median (range) of ACC, ASR and the lowest class, the worst class, time; seeds whose ASR means nothing."""
    def pct(d: dict) -> str:
        return f"median {d['median']:.1%} ({d['min']:.1%}-{d['max']:.1%}, mean {d['mean']:.1%} ± {d['std']:.1%})" if d else "n/a"

    w = spread["worst"]
    lines = [f"{config.defense} vs {config.attack} {config.rate:.0%} on {config.dataset} ({config.scale}), "
             f"{len(spread['seeds'])} seeds {','.join(map(str, spread['seeds']))}:",
             f"  ACC {pct(spread['acc'])}",
             f"  ASR {pct(spread['asr'])}",
             f"  lowest per-class accuracy {pct(spread['lowest_class_acc'])}; worst {w['class']} {w['acc']:.1%} (seed {w['seed']})",
             f"  time median {_durations(spread['seconds'])}"]
    for seed, caveat in spread["asr_caveats"].items():
        lines.append(f"  ASR not meaningful in seed {seed}: {caveat}")
    lines.append("  (numbers repeat exactly on one machine, not across CPU models)")
    return "\n".join(lines)


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import data_dir, describe

    rows = describe()
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    print(f"data directory: {data_dir()} (set ASDKIT_DATA to change)")
    for row in rows:
        if row.get("available"):
            print(f"  {row['name']:<14} found    {row.get('path')}")
        else:
            print(f"  {row['name']:<14} missing  how to get it:")
            for line in str(row.get("how", "")).splitlines():
                print(f"      {line}")
    return 0


def _cmd_course(args: argparse.Namespace) -> int:
    from . import course

    at = args.scale or course.scale()
    if args.action == "list":
        from . import planner

        from .records import run_folder, runs_dir

        named = course.configs(at)
        print(f"{at} scale; records in {runs_dir().resolve()}")
        total, counted = 0.0, set()
        for (name, cfg), (_, state) in zip(named.items(), planner.status(list(named.values()))):
            spec, est = course.COURSE[name], planner.estimate(cfg) if state != "done" else None
            folder = run_folder(cfg).name  # two names can be one run at a scale (the same config): trained once, counted once
            total += (est or 0.0) if folder not in counted else 0.0
            counted.add(folder)
            print(f"  {state:<8} {name:<24} {planner.duration(est) if est else '':<9} notebooks {','.join(spec.notebooks):<10} {spec.about}")
        done = sum(s == "done" for _, s in planner.status(list(named.values())))
        print(f"{len(named)} runs, {done} done" + (f"; the missing ones: {planner.duration(total)} on this machine, one at a time "
                                                     "(planned work × a per-image cost measured here)" if total else ""))
        return 0
    names = [x.strip() for x in args.only.split(",")] if args.only else None
    if _plan_only(args, list(course.configs(at, names).values())):
        return 0
    for s in course.prepare(at, names=names, jobs=args.jobs, launcher=args.launcher, options=_launcher_options(args), quiet=args.quiet):
        print(f"  {s['name']:<24} ACC {s['acc']:.2%}  ASR {s['asr']:.2%}  {s['seconds']:.0f} s{' (reused)' if s.get('reused') else ''}")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from . import figures
    from .records import runs_dir

    chosen = figures.select(args.only)
    runs, uses = figures.plan(chosen, args.scale)
    if _plan_only(args, list(runs.values())):
        return 0
    todo = figures.missing(runs)
    if args.list:
        for fig in chosen:
            names = sorted(set(uses[fig.key].values()))
            left = sum(n in todo for n in names)
            print(f"  {fig.key:<10} {len(names):>2} run(s), {left} missing  {fig.caption}")
        print(f"{len(runs)} distinct runs at {args.scale} scale in {runs_dir()}, {len(todo)} missing")
        return 0
    try:
        out = figures.regenerate(args.scale, only=args.only, out=args.out, jobs=args.jobs, train=not args.no_train,
                                 quiet=args.quiet, device=args.device, available=args.available,
                                 launcher=args.launcher, launcher_options=_launcher_options(args))
    except figures.TrainingForbidden as exc:
        raise ValueError(f"{exc} (drop --no-train to train them)") from None
    print(f"{len(out['figures'])} figures from {out['runs']} runs ({out['trained']} trained, {out['train_seconds']:.0f} s) in {out['out']}/")
    if out["skipped"]:
        print(f"skipped (records missing): {', '.join(out['skipped'])}")
    return 0


def _sweep_configs(args: argparse.Namespace) -> list:
    """The sweep's declared set: the figures' runs, or the grid of its axes; on ``--device`` if given."""
    from dataclasses import replace

    from . import sweep

    if args.figures:
        if any(v is not None for v in (args.defense, args.attack, args.seed, args.rate)) or args.assignments:
            raise ValueError("--figures takes the figures' own runs; it cannot be combined with --defense/--attack/--seed/--rate/--set.")
        configs = sweep.from_figures(None if args.figures == "all" else args.figures, args.scale)
    else:
        axes = sweep.parse_axes(args.assignments, defense=args.defense, attack=args.attack, seed=args.seed, rate=args.rate)
        configs = sweep.grid(args.scale, axes)
    return [replace(c, device=args.device) for c in configs] if args.device else configs


def _cmd_sweep(args: argparse.Namespace) -> int:
    from . import planner

    configs = _sweep_configs(args)
    if _plan_only(args, configs):
        return 0
    results = planner.launch(configs, launcher=args.launcher, jobs=args.jobs, options=_launcher_options(args), quiet=args.quiet)
    failed = [r for r in results if r["state"] == "failed"]
    for r in results:
        line = f"  {r['state']:<14} {r['run']:<44}"
        if r["state"] in ("done", "reused") and r.get("acc") is not None:
            line += f" ACC {r['acc']:.2%}  ASR {r['asr']:.2%}" if r.get("asr") is not None else f" ACC {r['acc']:.2%}"
        elif r.get("error"):
            line += f" {planner.describe(r['config'])}: {r['error']}"
        print(line)
    held = [r for r in results if r["state"] == "held elsewhere"]
    if held:
        print(f"{len(held)} run(s) held by another worker; waiting for them ...")
        planner.wait_for([r["config"] for r in held])
    print("\n".join(planner.summary_lines(configs)[-1:]))
    return 1 if failed else 0


def _cmd_results(args: argparse.Namespace) -> int:
    from . import planner, results

    if args.render:
        files = results.render_files(args.out)
        print(f"rendered {len(files)} file(s) from {args.out}/{results.CSV}")
        return 0
    configs = results.configs(args.sets)
    if _plan_only(args, configs):
        return 0
    failed = []
    if not args.no_train:
        done = planner.launch(configs, launcher=args.launcher, jobs=args.jobs, options=_launcher_options(args), quiet=args.quiet)
        failed = [r for r in done if r["state"] == "failed"]
        for r in failed:
            print(f"  failed  {r['run']}: {r['error']}")
        planner.wait_for(configs)
    out = results.build(args.sets, out=args.out)
    print(f"{out['rows']} rows in {out['out']}/{results.CSV}: {out['read']} read from records now, {out['kept']} kept from an earlier build")
    return 1 if failed else 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from .student import write_student_copies

    files = write_student_copies(args.student, args.source)
    print(f"wrote {len(files)} student notebooks (no solution cells) to {args.student}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"run": _cmd_run, "data": _cmd_data, "options": _cmd_options, "course": _cmd_course,
                "notebooks": _cmd_notebooks, "figures": _cmd_figures, "sweep": _cmd_sweep,
                "results": _cmd_results}[args.command](args)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print("asdkit: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `asdkit options | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("asdkit: interrupted; the run resumes from its last finished epoch next time.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
