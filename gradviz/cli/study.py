"""`gradviz study`: build stimuli, status, export, power analysis, pre-register, hash the researcher password
(the study extra: `pip install 'gradviz[study]'`)."""
from __future__ import annotations

import sys
from pathlib import Path

from gradviz.attacks.registry import attack_names, parse_attack_params
from gradviz.cli.common import Help
from gradviz.data.datasets import dataset_names


def add_parser(sub) -> None:
    st = sub.add_parser("study", formatter_class=Help,
                        help="human study: build stimuli, status, export, power analysis, pre-register, hash a password")
    st.add_argument("action", choices=("build", "status", "export", "power", "preregister", "hash-password"))
    st.add_argument("--db-url", default=None, help="database URL (default: GRADVIZ_DB_URL or a local SQLite file)")
    st.add_argument("--dataset", choices=dataset_names(), default="mnist")
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


def run(args) -> int:
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
