"""gradviz on the command line: train, the zoo and its sweeps from a recipe, evaluate, target grids, the reproduction
report, the study."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from gradviz.attacks.registry import REGISTRY, attack_names, parse_attack_params
from gradviz.attribution.methods import REGISTRY as SALIENCY_METHODS
from gradviz.cli.interpret import add_interpret_parser, run_interpret
from gradviz.cli.zoo import add_zoo_parser, run_zoo
from gradviz.data.datasets import CLASS_NAMES, DATASETS, DatasetNotFound, download_mnist, load_arrays
from gradviz.data.ground_truth import MASK_MEANING
from gradviz.nets.architecture import LAYER_STYLES, ZOO_WIDTH
from gradviz.nets.cards import ModelFileError, free_user_name, list_models, require_dataset
from gradviz.params import parse_settings
from gradviz.training.defenses import DEFENSE_SPECS, DEFENSES, SETTINGS

PARAM_HELP = ("an attack's setting over its default, repeatable: " + "; ".join(
    f"{a.name}: {', '.join(f'{p.name} (default {p.default:g})' for p in a.params)}" for a in REGISTRY.values()
    if a.params))


def _iterative() -> list[str]:
    return [a.name for a in REGISTRY.values() if a.multi_step and a.eps_bounded]


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not for flags, unset options or help that names one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _add_train(sub):
    p = sub.add_parser("train", help="train one model of any defense", formatter_class=_Help)
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--defense", choices=DEFENSES, default="normal")
    _add_defense_settings(p)
    p.add_argument("--lam-ref", type=float, default=None,
                   help="λ in the reference code's units (converted: λ = λ_ref / 512)")
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=None, help="train for this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: anneal the learning rate to 0 over the run")
    p.add_argument("--init-from", default=None, help="start from this model's weights (a zoo or user model name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--width", type=int, default=ZOO_WIDTH, help="FC width (the paper's is 1024)")
    p.add_argument("--layers", choices=LAYER_STYLES, default="zoo",
                   help="zoo: the committed zoo's layers; reference: the authors' code exactly (no bias before "
                        "batch norm, no γ, ε 1e-3, Xavier init)")
    p.add_argument("--augment", action="store_true", help="random ±2 pixel shifts")
    p.add_argument("--name", default=None, help="model name (default: dataset-defense[-lamX])")
    p.add_argument("--out", default=None, help="output folder (default: the user model folder)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's IDX files")
    p.add_argument("--train-subset", type=int, default=None, help="train on only the first N training digits")
    p.add_argument("--holdout", type=int, default=0,
                   help="hold out N training digits (seeded, the same for every --seed), as a sweep does")
    p.add_argument("--fast-penalty", action="store_true",
                   help="the penalty's hand-written CPU fast path (same values to float rounding, ~1.5x faster on "
                        "PaperCNN); a model with a layer it does not know trains with plain autograd, said once")
    return p


def _add_defense_settings(p) -> None:
    """One flag per defense setting, from the defense specs (their defaults are TrainConfig's)."""
    from gradviz.training.config import TrainConfig

    defaults = TrainConfig(device="cpu")
    for setting in SETTINGS.values():
        users = ", ".join(d.name for d in DEFENSE_SPECS.values() if setting.name in d.settings)
        kind = {"choices": setting.choices} if setting.choices else {"type": float}
        p.add_argument(setting.flag, default=getattr(defaults, setting.name), **kind,
                       help=f"{setting.help} ({users})")


def _add_checkpointing(p) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run of this name from its checkpoint, if there is one")
    p.add_argument("--checkpoint-every", type=int, default=250, help="save the run's whole state every N steps")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where unfinished runs keep checkpoints (default: GRADVIZ_CHECKPOINTS or ~/.gradviz/checkpoints)")


def _config(args):
    import torch

    from gradviz.training.config import TrainConfig
    from gradviz.training.penalties import from_reference_lambda

    lam = from_reference_lambda(args.lam_ref) if args.lam_ref is not None else args.lam
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but this torch build sees no CUDA device")
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**given | {"lam": lam, "device": device})


def _train(args) -> int:
    from gradviz.nets.checkpoints import checkpoint_path
    from gradviz.paths import checkpoint_dir
    from gradviz.training.loop import train_and_save

    config = _config(args)
    config.validate()
    if args.out is None:  # a user model: never under a zoo model's name
        config.name = config.name or free_user_name(config.default_name())
    checkpoint = checkpoint_path(args.checkpoint_dir or checkpoint_dir(), config.name or config.default_name())
    if args.resume and checkpoint.is_file():
        print(f"resuming from {checkpoint}", file=sys.stderr)
    path, card = train_and_save(config, out=args.out, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                                resume=args.resume)
    print(f"saved {path}  clean test accuracy {card['clean_test_accuracy']:.4f} "
          f"({card['n_test']} images, {card['train_seconds']:.0f} s on {card['device']})")
    return 0


def _evaluate(args) -> int:
    from gradviz.evaluation.matrix import EvalConfig, evaluate, evaluation_summary, write_results
    from gradviz.evaluation.report import write_report

    config = EvalConfig(dataset=args.dataset, models=[m for m in args.models.split(",") if m],
                        attacks=args.attacks.split(","), eps=[float(e) for e in args.eps.split(",")], n=args.n,
                        seed=args.seed, target_mode=args.target, batch_size=args.batch_size,
                        precision=args.precision, l0_n=args.l0_n, iterative_n=args.iterative_n,
                        iterative_eps=[float(e) for e in args.iterative_eps.split(",")] if args.iterative_eps else None,
                        attack_params=parse_attack_params(args.param))
    if args.device:
        config.device = args.device
    result = evaluate(config, cache_dir=Path(args.out) / "cache", finished_only=args.finished_only)
    if result.provenance.get("blocks_missing"):
        missing = result.provenance["blocks_missing"]
        print(f"{len(missing)} block(s) not computed yet (--finished-only), the first: {'; '.join(missing[:3])}",
              file=sys.stderr)
    write_results(result, args.out)
    if not args.no_report:
        write_report(result, args.out, heatmap_eps=args.heatmap_eps)
    print(evaluation_summary(result))
    print(f"{result.provenance['seconds']:.1f} s on {result.provenance['device']}; results in {args.out}")
    return 0


def _reproduce(args) -> int:
    from gradviz.evaluation.reproduction import write_reproduction

    preamble = Path(args.preamble).read_text() if args.preamble else ""
    path = write_reproduction(args.mnist, args.fashion, args.out, preamble, args.mnist_beyond, args.interpretation,
                              args.ground_truth, args.autoattack, args.paper_scale)
    print(f"written {path}")
    return 0


def _study(args) -> int:
    from gradviz.study.auth import hash_password, new_recovery_code, read_new_password
    from gradviz.study.db import NotReady, StudyLocked, make_engine

    if args.action == "hash-password":  # the hash alone on stdout (for $(…)); the recovery code on stderr
        code = new_recovery_code()
        print(hash_password(read_new_password(), recovery_code=code))
        print(f"Recovery code (store it offline; with your password it gets you past the site-wide login limit "
              f"while someone floods the login): {code}", file=sys.stderr)
        return 0
    engine = make_engine(args.db_url)
    actions = {"build": _study_build, "export": _study_export, "power": _study_power,
               "preregister": _study_preregister, "status": _study_status}
    try:
        return actions[args.action](engine, args)
    except (NotReady, StudyLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _study_status(engine, _args) -> int:
    from gradviz.study import preregistration, sessions

    for key, value in sessions.progress(engine).items():
        print(f"{key:>10}: {value}")
    record = preregistration.current(engine)
    if record is None:
        print("not pre-registered: run `gradviz study preregister` before recruiting")
    else:
        print(f"pre-registered {record['frozen_at']}, record sha256 {record['record_sha256']}")
        for problem in preregistration.verify(engine):
            print(f"MISMATCH: {problem}")
    return 0


def _study_build(engine, args) -> int:
    from gradviz.study.stimuli import StimulusConfig, build_stimuli
    from gradviz.study.stimulus_sets import activate_set, ensure_can_switch_to, store_stimuli

    config = StimulusConfig(dataset=args.dataset, models=[m for m in args.models.split(",") if m],
                            attacks=args.attacks.split(","), eps=[float(e) for e in args.eps.split(",")],
                            items_per_class=args.items_per_class, attention_checks=args.attention_checks,
                            seed=args.seed)
    config.attack_params.update(parse_attack_params(args.param))
    ensure_can_switch_to(engine, config.set_id())
    stored = store_stimuli(engine, build_stimuli(config))  # how many were new: a rebuilt set stores none
    activate_set(engine, config.set_id(), config.dataset)
    print(f"stimulus set {config.set_id()}: {stored} new stimuli stored and activated")
    return 0


def _study_export(engine, args) -> int:
    from gradviz.study.analysis import export_frame, responses_frame
    from gradviz.study.export import study_archive

    if args.out.endswith(".zip"):
        Path(args.out).write_bytes(study_archive(engine))
        print(f"wrote {args.out} (answers, pre-registration, stimuli and their provenance)")
        return 0
    frame = export_frame(responses_frame(engine))
    if args.out.endswith(".parquet"):
        frame.to_parquet(args.out, index=False)
    else:
        frame.to_csv(args.out, index=False)
    print(f"wrote {args.out} ({len(frame)} answers)")
    return 0


def _study_power(engine, args) -> int:
    from gradviz.study.power import run_power_analysis

    result = run_power_analysis(engine, effect=args.effect, sims=args.sims, target=args.target_power,
                                alpha=args.alpha, max_n=args.max_n, progress=_power_printer(args.sims))
    print(f"assumptions: {result.assumptions}")
    for row in result.curve:
        print(f"N = {row['n']:4d}: power {row['power']:.3f} (95% {row['ci_low']:.3f}–{row['ci_high']:.3f})")
    print(f"participants needed for {result.target:.0%} power at α = {result.alpha}: "
          f"{result.n_required if result.n_required else f'more than {args.max_n}'}")
    return 0


def _power_printer(sims: int):
    """Progress of the power search: one line rewritten in a terminal, one line per N tried in a log."""
    live = sys.stderr.isatty()

    def show(message: str) -> None:
        if live:
            print(f"\r{message}   ", end="", file=sys.stderr, flush=True)
        elif message.endswith(f" {sims} of {sims}"):
            print(message.replace(f"simulation {sims} of {sims}", f"{sims} simulations done"), file=sys.stderr)
    return show


def _study_preregister(engine, args) -> int:
    from gradviz.study import preregistration

    record = preregistration.freeze(engine, args.planned_n, args.hypothesis, args.alpha)
    print(preregistration.to_markdown(record))
    return 0


def _models_of(args) -> tuple[dict, dict]:
    """--models loaded on --device (default cpu) as ({name: model}, {name: card}), all of --dataset."""
    from gradviz.nets.store import load_model

    loaded = {n: load_model(n, args.device or "cpu") for n in args.models.split(",") if n}
    cards = {n: c for n, (_, c) in loaded.items()}
    require_dataset(cards, args.dataset)
    return {n: m for n, (m, _) in loaded.items()}, cards


def _grid(args) -> int:
    from gradviz.data.datasets import load_dataset, num_classes
    from gradviz.data.images import to_png16
    from gradviz.evaluation.grids import first_of_each_class, mosaic, provenance, target_grid

    models, cards = _models_of(args)
    device = args.device or "cpu"
    x, y = first_of_each_class(*load_dataset(args.dataset, "test", args.data_dir), per_class=args.per_class,
                               classes=num_classes(args.dataset))
    params = parse_attack_params(args.param)
    stray = sorted(set(params) - {args.attack})
    if stray:
        raise ValueError(f"--param names {', '.join(stray)}, but the grid's attack is {args.attack}")
    grid = target_grid(models, x.to(device), y, attack=args.attack, eps=args.eps,
                       params=params.get(args.attack))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = f"first {args.per_class} test image(s) of each class"
    for name in models:
        record = provenance(grid, name, args.iteration, cards, args.dataset, rows)
        stem = out / f"{name}-{args.attack}-it{record['iteration']}"
        stem.with_suffix(".png").write_bytes(to_png16(mosaic(grid.cells(name, args.iteration))))
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
        share = grid.success_share(grid.predicted[name][record["iteration"]])
        what = "predicts the target in" if grid.targeted else "is fooled in"
        print(f"{stem}.png  {name} {what} {share:.0%} of the {int(grid.counted().sum())} "
              f"{'off-diagonal ' if grid.targeted else ''}cells")
    return 0


def _saliency(args) -> int:
    from gradviz.attribution.methods import explain, get_method, normalise
    from gradviz.data.datasets import load_dataset
    from gradviz.data.images import to_png16

    entry = get_method(args.method)
    given = parse_settings(args.param, "--param", example="integrated-gradients.n_steps=64")
    settings = entry.settings(given.pop(entry.name, {}))
    if given:
        raise ValueError(f"--param names {', '.join(given)}, but the method is {entry.name}")
    models, _ = _models_of(args)
    x, y = load_dataset(args.dataset, "test", args.data_dir)
    if not 0 <= args.index < len(x):
        raise ValueError(f"--index must lie in [0, {len(x) - 1}], got {args.index}")
    image, label = x[args.index:args.index + 1].to(args.device or "cpu"), int(y[args.index])
    views = explain(models, image, label, entry.name, args.cls, **settings)
    maps, scales = normalise([v["map"] for v in views.values()], shared=not args.own_scale, signed=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for (name, view), shown, scale in zip(views.items(), maps, scales):
        stem = out / f"{name}-{entry.name}-{args.index}"
        stem.with_suffix(".png").write_bytes(to_png16(shown))
        record = {"model": name, "method": entry.name, "settings": settings, "dataset": args.dataset,
                  "test_index": args.index, "label": label, "explained_class": args.cls if entry.takes_class else None,
                  "scale": scale, "shared_scale": not args.own_scale, "probabilities": view["probs"].tolist()}
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
        print(f"{stem}.png  {name} predicts {int(view['probs'].argmax())} ({view['probs'].max():.0%}); "
              f"white = |attribution| {scale:.3g}")
    return 0


def _models(args) -> int:
    cards = list_models()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    for c in cards:
        print(f"{c['origin']:5} {c['name']:36} {c['dataset']:14} {c['defense']:17} "
              f"acc {c['clean_test_accuracy']:.4f}")
    if not cards:
        print("no models found")
    return 0


def _data(args) -> int:
    if args.action == "download":
        print(f"downloaded and checked {download_mnist(args.data_dir or 'data')}")
        return 0
    if args.action == "sample":  # how assets/samples/ (what the app shows without the full data) was made
        from gradviz import paths
        from gradviz.data.datasets import write_sample

        for name in DATASETS if args.dataset is None else [args.dataset]:
            print(f"wrote {write_sample(name, args.n, Path(args.out) if args.out else paths.SAMPLES_DIR)}")
        return 0
    for name in DATASETS if args.dataset is None else [args.dataset]:
        try:
            a = load_arrays(name, args.data_dir)
            shape = "×".join(map(str, a.test_x.shape[1:]))
            truth = f"  masks: {MASK_MEANING[name][0]}" if name in MASK_MEANING else ""
            print(f"{name:14} train {len(a.train_x):6}  test {len(a.test_x):6}  {shape}  "
                  f"{len(CLASS_NAMES[name])} classes{truth}  source {a.source}")
        except DatasetNotFound as exc:
            print(f"{name:14} not found: {exc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_checkpointing(_add_train(sub))
    add_zoo_parser(sub)
    e = sub.add_parser("evaluate", help="source×target robustness matrix, CSV + JSON + HTML report",
                       formatter_class=_Help)
    e.add_argument("--dataset", choices=DATASETS, default="mnist")
    e.add_argument("--models", default="", help="comma-separated model names (default: the dataset's zoo)")
    e.add_argument("--attacks", default="fgsm,tgsm", help=f"any of {','.join(attack_names())}")
    e.add_argument("--param", action="append", metavar="ATTACK.SETTING=VALUE", help=PARAM_HELP)
    e.add_argument("--iterative-n", type=int, default=None,
                   help=f"run the iterative ε-attacks ({','.join(_iterative())}) on the first N of the --n images only "
                        "(default: all of them)")
    e.add_argument("--l0-n", type=int, default=1000, dest="l0_n",
                   help=f"pixel-budget attacks ({','.join(attack_names(eps_bounded=False))}: no ε; success rate and "
                        "pixels changed) on the first N of the --n images")
    e.add_argument("--eps", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7")
    e.add_argument("--iterative-eps", default=None,
                   help="ε grid for the iterative ε-attacks only (default: --eps); each of their ε costs 10-20 "
                        "gradient steps")
    e.add_argument("--n", type=int, default=1000, help="first n test images")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--target", default="next", help="TGSM target: next, least-likely, random or a class")
    e.add_argument("--device", default=None)
    e.add_argument("--batch-size", type=int, default=1000)
    e.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: faster accuracy counting under autocast (attack gradients stay fp32)")
    e.add_argument("--heatmap-eps", type=float, default=0.3)
    e.add_argument("--no-report", action="store_true", help="skip the HTML report")
    e.add_argument("--finished-only", action="store_true",
                   help="compute nothing: write the results of the blocks already in OUT/cache (a long run's "
                        "progress so far, even while it runs) and list the missing ones")
    e.add_argument("--out", required=True)
    add_interpret_parser(sub)
    r = sub.add_parser("reproduce", help="write docs/REPRODUCTION.md from evaluation result folders")
    r.add_argument("--mnist", required=True, help="result folder of an mnist evaluate run")
    r.add_argument("--fashion", default=None, help="result folder of a fashion-mnist evaluate run")
    r.add_argument("--mnist-beyond", action="append", default=[], metavar="FOLDER",
                   help="result folder of stronger transfer attacks (e.g. mifgsm) on the same MNIST models, repeatable")
    r.add_argument("--interpretation", action="append", default=[], metavar="FOLDER",
                   help="result folder of an interpret run (the section 'Interpretability, measured'), repeatable")
    r.add_argument("--ground-truth", action="append", default=[], metavar="FOLDER",
                   help="result folder of an interpret run on decoy-mnist or block-mnist (the section 'Ground "
                        "truth'), repeatable")
    r.add_argument("--paper-scale", default=None, metavar="FOLDER",
                   help="result folder of the evaluate run of mnist-normal-paper and mnist-gradreg-paper (the section "
                        "'The headline at paper scale')")
    r.add_argument("--autoattack", action="append", default=[], metavar="FOLDER",
                   help="result folder of an evaluate run holding autoattack (the section 'Robustness checked with "
                        "AutoAttack'), repeatable")
    r.add_argument("--preamble", default=None, help="Markdown file with the prose that precedes the tables")
    r.add_argument("--out", default="docs/REPRODUCTION.md")
    st = sub.add_parser("study", formatter_class=_Help,
                        help="human study: build stimuli, status, export, power analysis, pre-register, hash a password")
    st.add_argument("action", choices=("build", "status", "export", "power", "preregister", "hash-password"))
    st.add_argument("--db-url", default=None, help="database URL (default: GRADVIZ_DB_URL or a local SQLite file)")
    st.add_argument("--dataset", choices=DATASETS, default="mnist")
    st.add_argument("--models", default="", help="source models (default: zoo normal,distilled,advtrain,gradreg)")
    st.add_argument("--attacks", default="itgsm,tgsm", help=f"any of {','.join(attack_names())}")
    st.add_argument("--param", action="append", metavar="ATTACK.SETTING=VALUE",
                    help="an attack's setting over the study's default (itgsm: steps 20, step_scale 0.125)")
    st.add_argument("--eps", default="0.3")
    st.add_argument("--items-per-class", type=int, default=2)
    st.add_argument("--attention-checks", type=int, default=4)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--out", default="answers.csv",
                    help="export: .csv or .parquet (answers), .zip (answers, pre-registration and stimuli)")
    st.add_argument("--effect", type=float, default=0.5,
                    help="power: planted difference, gradreg − other source models, in rating points")
    st.add_argument("--sims", type=int, default=200, help="power: simulated studies per N")
    st.add_argument("--target-power", type=float, default=0.8)
    st.add_argument("--alpha", type=float, default=0.05)
    st.add_argument("--max-n", type=int, default=400, help="power: give up above this many participants")
    st.add_argument("--planned-n", type=int, default=0, help="preregister: planned number of participants")
    st.add_argument("--hypothesis", default="", help="preregister: the hypothesis, in words")
    g = sub.add_parser("grid", help="the paper's target grids: every class pushed towards every class, as PNG + JSON",
                       formatter_class=_Help)
    g.add_argument("--dataset", choices=DATASETS, default="mnist")
    g.add_argument("--models", default="mnist-normal,mnist-distilled,mnist-gradreg")
    g.add_argument("--attack", choices=attack_names(), default="itgsm",
                   help="targeted attacks make 10 columns (one per target), untargeted ones a single column")
    g.add_argument("--eps", type=float, default=None,
                   help="L∞ budget (default: itgsm 1, the paper's unprojected grids; others 0.3; JSMA has none)")
    g.add_argument("--param", action="append", metavar="ATTACK.SETTING=VALUE",
                   help="a setting over the grid's default (itgsm: steps 25, step_scale 0.1 = step 0.1), e.g. "
                        "itgsm.steps=50 or jsma.gamma=0.1")
    g.add_argument("--iteration", type=int, default=10, help="the iteration written (the paper's MNIST grids: 10)")
    g.add_argument("--per-class", type=int, default=1, help="rows: the first N test images of each class")
    g.add_argument("--device", default=None)
    g.add_argument("--data-dir", default=None)
    g.add_argument("--out", required=True)
    sal = sub.add_parser("saliency", help="saliency maps of one test image through several models, as PNG + JSON",
                         formatter_class=_Help)
    sal.add_argument("--dataset", choices=DATASETS, default="mnist")
    sal.add_argument("--models", default="mnist-normal,mnist-gradreg")
    sal.add_argument("--method", choices=list(SALIENCY_METHODS), default="gradient-logsum",
                     help="; ".join(f"{m.name}: {m.label}" for m in SALIENCY_METHODS.values()))
    sal.add_argument("--index", type=int, default=0, help="the test image")
    sal.add_argument("--cls", type=int, default=None, help="the class to explain (methods that take one; "
                                                           "default: the true label)")
    sal.add_argument("--param", action="append", metavar="METHOD.SETTING=VALUE",
                     help="a method setting, e.g. integrated-gradients.n_steps=64 or smoothgrad.samples=32")
    sal.add_argument("--own-scale", action="store_true", help="scale each map by its own maximum (default: one "
                                                              "shared scale, so magnitudes compare)")
    sal.add_argument("--device", default=None)
    sal.add_argument("--data-dir", default=None)
    sal.add_argument("--out", required=True)
    m = sub.add_parser("models", help="list the zoo and user models")
    m.add_argument("--json", action="store_true")
    d = sub.add_parser("data", help="show where datasets come from, download MNIST, or write the committed samples")
    d.add_argument("action", choices=("info", "download", "sample"), nargs="?", default="info",
                   help="sample: the first --n test images (labels, masks, source) as assets/samples/NAME.npz")
    d.add_argument("dataset", nargs="?", choices=DATASETS, default=None)
    d.add_argument("--data-dir", default=None)
    d.add_argument("--n", type=int, default=100, help="sample: how many test images")
    d.add_argument("--out", default=None, help="sample: the folder (default: assets/samples)")
    return parser


COMMANDS = {"train": _train, "zoo": run_zoo, "evaluate": _evaluate, "reproduce": _reproduce, "study": _study,
            "grid": _grid, "saliency": _saliency, "models": _models, "data": _data, "interpret": run_interpret}


# What each optional package belongs to: `pip install gradviz` is the core; a command that needs more names the
# extra to install instead of a traceback.
EXTRAS = {"streamlit": "app", "streamlit_drawable_canvas": "app", "sqlalchemy": "study", "psycopg": "study",
          "statsmodels": "study", "krippendorff": "study", "pyarrow": "study", "ray": "ray", "psutil": "ray"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional package, or None when the module is not an extra's."""
    extra = EXTRAS.get((exc.name or "").split(".")[0])
    if extra is None:
        return None
    return f"error: this needs gradviz's {extra!r} extra ({exc.name} is missing): pip install 'gradviz[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, DatasetNotFound, ModelFileError) as exc:  # CheckpointError, DatasetIntegrityError too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
