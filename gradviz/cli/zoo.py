"""`python -m gradviz zoo build | sweep | status | carry | adopt | table`: the recipes on the command line."""
from __future__ import annotations

import sys
from pathlib import Path

README_MARKERS = ("<!-- zoo-table:start (python -m gradviz zoo table --write README.md) -->", "<!-- zoo-table:end -->")


def add_parser(sub) -> None:
    z = sub.add_parser("zoo", help="build the zoo and run its λ × seed sweeps from a recipe, on Ray (local or a cluster)")
    zsub = z.add_subparsers(dest="zoo_command", required=True)
    b = zsub.add_parser("build", help="train the recipe's models that are missing (resumes interrupted ones)")
    b.add_argument("recipe", help="a dataset (mnist, fashion-mnist: recipes/NAME.toml) or a recipe file")
    b.add_argument("--only", nargs="+", default=None, metavar="MODEL", help="build just these entries")
    b.add_argument("--rebuild", nargs="+", default=[], metavar="MODEL",
                   help="train these again from scratch even though they exist")
    b.add_argument("--out", default=None, help="where zoo models go (default: the repository's models/)")
    s = zsub.add_parser("sweep", help="run sweeps (all by default) and write their tables and choices")
    s.add_argument("recipe")
    s.add_argument("sweeps", nargs="*", help="sweep names (default: every sweep in the recipe)")
    cv = zsub.add_parser("curve", help="how many annotations does it take? run the recipe's [annotation_curve] "
                                        "(penalty × annotated images × seed, resumable) and write curve.json")
    cv.add_argument("recipe")
    cv.add_argument("--write", default=None, metavar="FOLDER",
                    help="also write curve.json here (e.g. docs/results/decoy-mnist-annotation-curve)")
    cv.add_argument("--out", default=None, help="the zoo folder the start model is in (default: the repository's models/)")
    cv.add_argument("--only", nargs="+", default=None, metavar="PENALTY",
                    help="run just these penalties and baselines (curve.json still lists every finished run)")
    for p in (b, s, cv):
        p.add_argument("--results", default=None,
                       help="results folder (default: GRADVIZ_RESULTS or ~/.cache/gradviz/experiments)")
        p.add_argument("--address", default=None,
                       help="a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray on 127.0.0.1)")
        p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
        p.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (and torch threads) per trial")
        p.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs per trial (trains on cuda when > 0)")
        p.add_argument("--max-failures", type=int, default=3, help="restarts of a trial from its checkpoint")
        p.add_argument("--dry-run", action="store_true", help="check the recipe and list the trials; train nothing")
    st = zsub.add_parser("status", help="where every model and sweep trial of a recipe stands")
    st.add_argument("recipe")
    st.add_argument("--results", default=None)
    st.add_argument("--out", default=None)
    c = zsub.add_parser("carry", help="pack long runs (finished models, or the latest checkpoint) into the checkout's "
                                      "carried/ so that a new machine resumes them; commit carried/ afterwards")
    c.add_argument("recipe")
    c.add_argument("--only", nargs="+", default=None, metavar="MODEL",
                   help="carry just these entries (default: every entry outside the zoo with a run on this machine)")
    c.add_argument("--results", default=None)
    c.add_argument("--out", default=None)
    c.add_argument("--stored-dtype", default="float16", help="precision of a carried finished model")
    a = zsub.add_parser("adopt", help="copy a finished defended model and its transfer source into the zoo at lower "
                                      "precision, checking the rounding changes clean and headline accuracy by nothing "
                                      "that matters")
    a.add_argument("target", help="the defended model (a user model, e.g. mnist-gradreg-paper)")
    a.add_argument("source", help="the normal model its FGSM examples come from (e.g. mnist-normal-paper)")
    a.add_argument("--stored-dtype", default="float16")
    a.add_argument("--eps", type=float, default=0.4, help="ε of the headline FGSM check")
    a.add_argument("--out", default=None, help="the zoo folder (default: the repository's models/)")
    t = zsub.add_parser("table", help="the README's zoo table, from the recipes and the committed cards")
    t.add_argument("recipes", nargs="*",
                   default=["mnist", "fashion-mnist", "decoy-mnist", "decoy-fashion-mnist", "block-mnist"])
    t.add_argument("--write", default=None, metavar="README", help="replace the table between its markers in this file")


def run(args) -> int:
    from gradviz.experiments.recipe import load_recipe

    if args.zoo_command == "table":
        return _table(args)
    if args.zoo_command == "adopt":
        return _adopt(args)
    recipe = load_recipe(args.recipe)
    return {"build": _build, "sweep": _sweep, "status": _status, "carry": _carry,
            "curve": _curve}[args.zoo_command](recipe, args)


def _adopt(args) -> int:
    from gradviz.experiments.adopt import adopt_pair
    from gradviz.paths import ZOO_DIR

    try:
        check = adopt_pair(args.target, args.source, args.stored_dtype, args.eps, args.out or ZOO_DIR)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, (full, small) in check["clean"].items():
        print(f"{name}: clean {full:.4f} (float32) → {small:.4f} ({args.stored_dtype})")
    print(f"FGSM from {args.source} at ε = {args.eps} on {args.target}: {check['float32']:.4f} → {check['stored']:.4f} "
          f"({check['images']:,} test images); set in_zoo = true and stored_dtype = \"{args.stored_dtype}\" in "
          "their recipe entries")
    return 0


def _out(args) -> Path:
    from gradviz.paths import ZOO_DIR

    return Path(args.out) if args.out else ZOO_DIR


def _run(trials, recipe, args, label: str) -> int:
    from gradviz.experiments.plan import layout
    from gradviz.experiments.runner import run_trials

    print(f"{len(trials)} trial(s): {', '.join(t.name for t in trials) or 'nothing to do'}", file=sys.stderr)
    if args.dry_run or not trials:
        return 0
    outcomes = run_trials(trials, layout(recipe, args.results).ray, label=label, address=args.address,
                          cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                          max_failures=args.max_failures, num_cpus=args.num_cpus)
    for o in outcomes:
        detail = f"clean {o.metrics['clean_test_accuracy']:.4f}" if "clean_test_accuracy" in o.metrics else o.error
        print(f"{o.name:40} {o.state:9} {detail or ''}".rstrip())
    return 0 if all(o.state == "finished" for o in outcomes) else 1


def _carry(recipe, args) -> int:
    from gradviz.experiments.carry import pack
    from gradviz.experiments.plan import carry_root, entry_trials
    from gradviz.experiments.recipe import RecipeError

    unknown = sorted(set(args.only or []) - set(recipe.models))
    if unknown:
        raise RecipeError(f"{recipe.path}: no [models] entry {', '.join(unknown)}")
    wanted = args.only or [name for name, entry in recipe.models.items() if not entry.in_zoo]
    root = carry_root(recipe)
    for trial in entry_trials(recipe, _out(args), args.results):
        if trial.name in wanted:
            print(f"{trial.name}: {_carried_line(pack(trial, root, args.stored_dtype), root / trial.name)}")
    return 0


def _carried_line(entry: dict | None, folder: Path) -> str:
    if entry is None:
        return "nothing to carry on this machine"
    size = sum(p.stat().st_size for p in folder.iterdir())
    what = (f"finished model at {entry['stored_dtype']} (clean {entry['float32_clean_test_accuracy']:.4f} → "
            f"{entry['clean_test_accuracy']:.4f})" if entry["state"] == "finished"
            else f"checkpoint at step {entry['step']:,}/{entry['steps']:,}")
    return f"{what}, {size / 2**20:.1f} MiB in {folder}; commit it"


def _unpack_carried(recipe, args) -> None:
    from gradviz.experiments.carry import unpack
    from gradviz.experiments.plan import carry_root, entry_trials

    root = carry_root(recipe)
    if not root.is_dir():
        return
    for trial in entry_trials(recipe, _out(args), args.results):
        if trial.name not in args.rebuild and (line := unpack(trial, root)):
            print(line, file=sys.stderr)


def _build(recipe, args) -> int:
    from gradviz.experiments.plan import build_trials, card_mismatches, reset

    if not args.dry_run:
        _unpack_carried(recipe, args)
    for name, diff in card_mismatches(recipe, _out(args)).items():
        if name not in args.rebuild:
            print(f"note: {name}'s card differs from the recipe in {', '.join(diff)}; --rebuild {name} retrains it",
                  file=sys.stderr)
    trials = build_trials(recipe, _out(args), args.results, args.only, args.rebuild)
    if not args.dry_run:
        reset([t for t in trials if t.name in args.rebuild])
    return _run(trials, recipe, args, f"{recipe.dataset}-build")


def _sweep(recipe, args) -> int:
    from gradviz.experiments.plan import sweep_trials, write_sweep

    code = _run(sweep_trials(recipe, args.sweeps, args.results), recipe, args, f"{recipe.dataset}-sweep")
    if not args.dry_run:
        for name in args.sweeps or recipe.sweeps:
            path, text = write_sweep(recipe, name, args.results)
            print(text)
            print(f"written to {path}", file=sys.stderr)
    return code


def _curve(recipe, args) -> int:
    from gradviz.evaluation.report.annotation_curve import summary_text
    from gradviz.experiments.annotation_curve import curve_folder, curve_record, curve_trials, write_curve
    from gradviz.experiments.recipe import RecipeError

    trials = curve_trials(recipe, args.results, _out(args), write_annotations=not args.dry_run)
    known = {t.group["curve"] for t in trials}
    if args.only and (unknown := sorted(set(args.only) - known)):
        raise RecipeError(f"{recipe.path}: [annotation_curve] has no {', '.join(unknown)} "
                          f"(it has {', '.join(sorted(known))})")
    todo = [t for t in trials if not args.only or t.group["curve"] in args.only]
    code = _run(todo, recipe, args, f"{recipe.dataset}-curve")
    if not args.dry_run:
        record = curve_record(recipe, trials)
        for folder in filter(None, [curve_folder(recipe, args.results), args.write]):
            print(f"written {write_curve(record, folder)}", file=sys.stderr)
        print(summary_text(record))
    return code


def _status(recipe, args) -> int:
    from gradviz.experiments.carry import manifest
    from gradviz.experiments.plan import card_mismatches, carry_root, entry_trials, sweep_trials, trial_state

    differs, root = card_mismatches(recipe, _out(args)), carry_root(recipe)
    models = entry_trials(recipe, _out(args), args.results)
    trials = [*models, *sweep_trials(recipe, None, args.results)]
    width = max(len(t.name) for t in trials) + 2
    for trial in trials:
        s = trial_state(trial)
        state = s["state"]
        if trial in models and state == "pending" and (Path(trial.out_dir) / f"{trial.name}.json").is_file():
            state = f"built, card differs in {', '.join(differs[trial.name])}" if trial.name in differs else "built"
        carried = manifest(root, trial.name) if trial in models and state == "pending" else None
        if carried:  # nothing here yet, but the checkout carries it: the next build unpacks it
            state, s = f"carried ({carried['state']})", {**s, "step": carried["step"], "steps": carried["steps"]}
        progress = f"step {s['step']}/{s['steps']}" if s["steps"] and state != "built" else ""
        accuracy = s["metrics"].get("accuracy")
        print(f"{trial.name:{width}}{state:24} {progress:18} "
              f"{'' if accuracy is None else f'held-out acc. {accuracy:.4f}'}".rstrip())
        if s["error"] and "failed" in state:
            print(f"{'':{width}}{s['error']}")
    return 0


def _table(args) -> int:
    from gradviz.experiments.plan import zoo_table
    from gradviz.experiments.recipe import load_recipe

    table = zoo_table([load_recipe(r) for r in args.recipes])
    if not args.write:
        print(table)
        return 0
    readme = Path(args.write)
    text = readme.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no zoo table markers ({start} … {end})")
    head, rest = text.split(start, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")
    print(f"zoo table written to {readme}", file=sys.stderr)
    return 0
