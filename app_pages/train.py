"""Train page: train any defense in the background with a live curve; the model lands in your model folder."""
import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import DEVICE, job_runner, pick_dataset
from gradviz.cards import user_model_dir
from gradviz.defenses import DEFENSES, REGULARIZED
from gradviz.training import TrainConfig, train_and_save

st.title("Train")
dataset = pick_dataset()
st.caption(f"Models are saved to `{user_model_dir()}` (never over the committed zoo) and appear on the Models page.")

with st.form("train"):
    c1, c2, c3 = st.columns(3)
    defense = c1.selectbox("Defense", DEFENSES, index=1, key="t_defense")
    lam = c2.number_input("λ (gradient penalty)", 0.0, 1e6, 1.0, help="Used by the gradreg defenses.")
    penalty = c3.selectbox("Penalty", ["exact", "finite-difference"])
    eps = c1.number_input("ε (adversarial training)", 0.0, 1.0, 0.3)
    temperature = c2.number_input("T (distillation)", 1.0, 1000.0, 50.0)
    epochs = c3.number_input("Epochs", 0.1, 100.0, 1.0, key="t_epochs")
    batch = c1.number_input("Batch size", 8, 1024, 128)
    lr = c2.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.5f")
    width = c3.number_input("FC width", 8, 2048, 128, key="t_width")
    name = st.text_input("Name", "", placeholder="default: dataset-defense[-lamX]")
    start = st.form_submit_button("Start training", type="primary", key="t_start")

if start:
    config = TrainConfig(dataset=dataset, defense=defense, lam=lam if defense in REGULARIZED else 0.0,
                         eps=eps, temperature=temperature, penalty=penalty, epochs=epochs, batch_size=int(batch),
                         lr=lr, device=DEVICE, width=int(width), name=name.strip() or None)
    try:
        config.validate()
    except ValueError as exc:
        st.error(f"Cannot start: {exc}")
    else:
        def work(job, config=config):
            def on_step(step, total, stats):
                job.report(step, total, f"step {step}/{total}", **stats)

            path, card = train_and_save(config, on_step=on_step, should_stop=lambda: job.cancelled,
                                        progress=False)
            return card

        st.session_state["train_job"] = job_runner().submit(f"train {config.default_name()}", work).id


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
        st.warning("Training cancelled; nothing was saved.")
    else:
        st.error(f"Training failed: {job.error}")
    if not history.empty:
        smooth = history.set_index("step")[["loss", "ce", "penalty", "acc"]].rolling(10, min_periods=1).mean()
        fig = px.line(smooth.reset_index().melt("step"), x="step", y="value", facet_col="variable",
                      facet_col_wrap=4, height=260)
        fig.update_yaxes(matches=None, showticklabels=True)
        st.plotly_chart(fig, width="stretch", key="curve")


live()
