"""Train page: train any defense in the background with a live curve; the model lands in your model folder.

Every run is checkpointed, so a run cut off by a closed server, a crash or Cancel can be resumed here.
"""
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.common import DEVICE, job_runner, pick_dataset, submit_job
from gradviz.evaluation import figures
from gradviz.nets.cards import free_user_name, list_models, refuse_zoo_name
from gradviz.nets.checkpoints import checkpoint_path, list_checkpoints
from gradviz.paths import checkpoint_dir, user_model_dir
from gradviz.training.config import LR_SCHEDULES, TrainConfig
from gradviz.training.defenses import DEFENSE_SPECS, DEFENSES, SETTINGS
from gradviz.training.loop import train_and_save

st.title("Train")
dataset = pick_dataset()
st.caption(f"Models are saved to `{user_model_dir()}` (never over the committed zoo) and appear on the Models page.")


def submit(config: TrainConfig, resume: bool = False) -> None:
    """Start (or resume) `config` as a background job that checkpoints as it goes."""
    name = config.name or config.default_name()
    path = checkpoint_path(checkpoint_dir(), name)

    def work(job, config=config):
        def on_step(step, total, stats):
            job.report(step, total, f"step {step}/{total}", **stats)

        _, card = train_and_save(config, on_step=on_step, should_stop=lambda: job.cancelled, progress=False,
                                 checkpoint=path, resume=resume)
        return card

    st.session_state["train_job"] = submit_job(f"{'resume' if resume else 'train'} {name}", work).id


def _run_name(meta: dict) -> str:
    return Path(meta["path"]).name.removesuffix(".checkpoint.safetensors")


def interrupted_runs() -> None:
    """Checkpoints of runs that did not finish, each with Resume and Discard."""
    runs = list_checkpoints(checkpoint_dir())
    busy = any(j.state in ("queued", "running") for j in job_runner().jobs.values())
    if not runs:
        return
    st.subheader("Interrupted runs")
    for meta in runs:
        name, config = _run_name(meta), meta["config"]
        c1, c2, c3 = st.columns([4, 1, 1])
        c1.markdown(f"**{name}** · {config['dataset']} · {config['defense']} · {meta['phase']} step "
                    f"{meta['step']:,} of {meta['total_steps']:,} · {meta['elapsed_seconds']:.0f} s trained")
        if c2.button("Resume", key=f"resume-{name}", disabled=busy,
                     help="Another training is running" if busy else "Continue exactly where it stopped"):
            submit(TrainConfig(**config, device=DEVICE, name=name), resume=True)
            st.rerun()
        if c3.button("Discard", key=f"discard-{name}", disabled=busy):
            Path(meta["path"]).unlink(missing_ok=True)
            st.rerun()


interrupted_runs()

c_defense, c_unit = st.columns([2, 1])
defense = c_defense.selectbox("Defense", DEFENSES, index=1, key="t_defense",
                              help="The form below shows only the settings this defense uses.")
unit = c_unit.radio("Train for", ["epochs", "steps"], horizontal=True, key="t_unit")
with st.form("train"):
    c1, c2, c3 = st.columns(3)
    chosen = {}  # the defense's own settings, as its spec lists them; the rest keep TrainConfig's defaults
    for column, name in zip((c1, c2, c3) * 2, DEFENSE_SPECS[defense].settings):
        setting = SETTINGS[name]
        if setting.choices:
            chosen[name] = column.selectbox(setting.label, setting.choices, key=f"t_{name}", help=setting.help)
        else:
            own = DEFENSE_SPECS[defense].suggested_lam if name == "lam" else None  # RRR's λ is not Grad Reg's
            chosen[name] = column.number_input(setting.label, setting.low, setting.high,
                                               setting.suggested if own is None else own, format="%.4g",
                                               key=f"t_{name}" if own is None else f"t_{name}_{defense}",
                                               help=setting.help)
    length = c1.number_input(f"Number of {unit}", 1, 100_000, 1 if unit == "epochs" else 500, step=1,
                             key=f"t_length_{unit}")
    batch = c2.number_input("Batch size", 8, 1024, 128, step=8)
    lr = c3.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.5f")
    schedule = c1.selectbox("Learning-rate schedule", LR_SCHEDULES, index=1, key="t_schedule")
    width = c2.number_input("FC width", 8, 2048, 128, key="t_width")
    starts = [""] + [c["name"] for c in list_models() if c.get("dataset") == dataset]
    init_from = c3.selectbox("Start from", starts, format_func=lambda n: n or "random weights", key="t_init")
    name = st.text_input("Name", "", placeholder="default: dataset-defense[-lamX]")
    start = st.form_submit_button("Start training", type="primary", key="t_start")

if start:
    config = TrainConfig(dataset=dataset, defense=defense, **chosen,
                         epochs=float(length) if unit == "epochs" else 1.0,
                         steps=int(length) if unit == "steps" else None, batch_size=int(batch),
                         lr=lr, device=DEVICE, width=int(width), name=name.strip() or None, lr_schedule=schedule,
                         init_from=init_from or None)
    try:
        config.validate()
        config.name = config.name or free_user_name(config.default_name())
        refuse_zoo_name(config.name)
        existing = checkpoint_path(checkpoint_dir(), config.name or config.default_name())
        if existing.is_file():
            raise ValueError(f"an interrupted run named {existing.name.split('.')[0]!r} exists: resume or discard "
                             "it above, or choose another name")
    except ValueError as exc:
        st.error(f"Cannot start: {exc}")
    else:
        submit(config)


@st.fragment(run_every=1.0)
def live() -> None:
    job = job_runner().jobs.get(st.session_state.get("train_job", ""))
    if job is None:
        st.info("No training started in this session.")
        return
    history = pd.DataFrame(job.snapshot())
    if job.state in ("queued", "running"):
        st.progress(job.fraction, text=f"{job.name}: {job.message or 'loading data…'}")
        if st.button("Cancel training", key="cancel"):
            job.cancel()
    elif job.state == "done":
        card = job.result
        st.success(f"Saved **{card['name']}**: clean test accuracy {card['clean_test_accuracy']:.2%} "
                   f"in {card['train_seconds']:.0f} s. Find it on the Models page.")
    elif job.state == "cancelled":
        st.warning("Training cancelled; no model was saved. Its checkpoint is listed under Interrupted runs.")
    else:
        st.error(f"Training failed: {job.error}")
    fig = figures.training_curves(history) if not history.empty else None
    if fig is not None:
        st.plotly_chart(fig, width="stretch", key="curve")
    elif job.state in ("queued", "running"):
        st.caption("The curves appear from the second step on.")

live()
