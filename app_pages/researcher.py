"""Researcher page (password-protected): build stimuli, watch progress, analyse, export."""
import io

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import job_runner
from app_pages.study_common import study_engine
from gradviz.datasets import DATASETS
from gradviz.study import sessions
from gradviz.study.analysis import analyse, export_frame, responses_frame
from gradviz.study.auth import Throttle, configured_password
from gradviz.study.db import get_setting, set_setting
from gradviz.study.stimuli import StimulusConfig, build_stimuli, stimulus_sets, stimulus_zip, store_stimuli


@st.cache_resource
def throttle() -> Throttle:
    """Shared by every session: opening a new tab does not reset the failure count."""
    return Throttle()


st.title("Researcher")
try:
    secrets_section = dict(st.secrets.get("researcher", {}))
except (FileNotFoundError, KeyError, AttributeError):
    secrets_section = {}
password = configured_password(secrets_section)
if password is None:
    st.error("The researcher page is closed: set GRADVIZ_RESEARCHER_PASSWORD or [researcher] password in "
             ".streamlit/secrets.toml (see the README).")
    st.stop()
if not st.session_state.get("researcher_ok"):
    with st.form("login"):
        given = st.text_input("Password", type="password", key="password")
        submitted = st.form_submit_button("Log in")
    locked = throttle().seconds_locked()
    if submitted and locked > 0:
        st.error(f"Too many failed attempts; try again in {locked:.0f} s.")
    elif submitted and throttle().attempt(given, password):
        st.session_state["researcher_ok"] = True
        st.rerun()
    elif submitted:
        st.error("Wrong password.")
    st.stop()

engine = study_engine()
sets = stimulus_sets(engine)
active = get_setting(engine, "active_set")
tab_progress, tab_analysis, tab_stimuli, tab_settings = st.tabs(["Progress", "Analysis", "Stimuli", "Settings"])

with tab_stimuli:
    st.write(f"Active stimulus set: **{active or 'none'}** ({len(sets)} built)")
    with st.form("build"):
        dataset = st.selectbox("Dataset", DATASETS)
        attacks = st.multiselect("Attacks", ["itgsm", "tgsm", "fgsm"], default=["itgsm", "tgsm"])
        eps = st.text_input("ε values", "0.3")
        per_class = st.number_input("Images per class", 1, 50, 2)
        checks = st.number_input("Attention checks", 0, 20, 4)
        seed = st.number_input("Seed", 0, 10**6, 0)
        build = st.form_submit_button("Build and activate")
    if build:
        config = StimulusConfig(dataset=dataset, attacks=attacks, eps=[float(e) for e in eps.split(",")],
                                items_per_class=int(per_class), attention_checks=int(checks), seed=int(seed))

        def work(job, config=config):
            job.report(0, 2, "attacking")
            rows = build_stimuli(config)
            job.report(1, 2, "storing")
            store_stimuli(engine, rows)
            set_setting(engine, "active_set", config.set_id())
            set_setting(engine, "active_dataset", config.dataset)
            job.report(2, 2, "done")
            return config.set_id()

        st.session_state["build_job"] = job_runner().submit("build stimuli", work).id
    job = job_runner().jobs.get(st.session_state.get("build_job", ""))
    if job is not None:
        if job.state == "done":
            st.success(f"Built and activated set {job.result}.")
        elif job.error:
            st.error(f"Building failed: {job.error}")
        else:
            st.progress(job.fraction, text=job.message or "starting…")
    if active:
        st.download_button("Download the active stimulus set (zip)", lambda: stimulus_zip(engine, active),
                           f"stimuli-{active}.zip", "application/zip", on_click="ignore")

with tab_settings:
    with st.form("settings"):
        consent_text = st.text_area("Consent text (Markdown)", get_setting(engine, "consent_text", ""), height=200)
        code = st.text_input("Prolific completion code", get_setting(engine, "completion_code", ""))
        if st.form_submit_button("Save"):
            set_setting(engine, "consent_text", consent_text)
            set_setting(engine, "completion_code", code)
            version = int(get_setting(engine, "consent_version", "0") or 0) + 1
            set_setting(engine, "consent_version", str(version))
            st.success(f"Saved (consent version {version}).")

frame = responses_frame(engine)
with tab_progress:
    counts = sessions.progress(engine)
    c1, c2, c3 = st.columns(3)
    c1.metric("Participants started", counts["started"])
    c2.metric("Completed", counts["completed"])
    c3.metric("Answers stored", counts["answers"])
    if frame.empty:
        st.info("No answers yet.")
    else:
        st.dataframe(frame.groupby("condition").size().rename("answers").reset_index(), hide_index=True)
        result = analyse(frame)
        att = result["attention"]
        failed = att.failed.sum() / max(1, att.checks.sum())
        st.write(f"Attention-check failure rate: **{failed:.1%}**. Exclusion rule (fixed before data): a participant "
                 f"who fails two or more checks is excluded — {int(att.excluded.sum())} of {len(att)} excluded.")
        st.download_button("Download raw answers (CSV)", lambda: export_frame(responses_frame(engine))
                           .to_csv(index=False), "answers.csv", "text/csv", on_click="ignore", key="csv")

        def parquet() -> bytes:
            buffer = io.BytesIO()
            export_frame(responses_frame(engine)).to_parquet(buffer, index=False)
            return buffer.getvalue()

        st.download_button("Download raw answers (Parquet)", parquet, "answers.parquet",
                           "application/octet-stream", on_click="ignore", key="parquet")

with tab_analysis:
    if frame.empty:
        st.info("No answers yet.")
    else:
        result = analyse(frame)
        for key, title in (("rating", "Mean legitimacy rating (1–7)"), ("target_share", "Share of target answers")):
            table = result[key]
            if table.empty:
                continue
            fig = go.Figure(go.Bar(x=table.source_model, y=table["mean"], error_y=dict(
                type="data", symmetric=False, array=table.ci_high - table["mean"], arrayminus=table["mean"] - table.ci_low)))
            fig.update_layout(title=f"{title}, 95% participant bootstrap", height=320)
            st.plotly_chart(fig, width="stretch", key=f"fig_{key}")
        st.write(f"Sign-flip permutation tests, {result['reference']} against each other model "
                 "(per-participant mean differences, two-sided, 10,000 permutations):")
        st.dataframe(result["tests"], hide_index=True)
        st.write(f"Inter-rater agreement, Krippendorff's α (ordinal): **{result['alpha']:.3f}**")
        sizes = result["sizes"]
        st.write(f"Rating vs perturbation size (Spearman): L2 ρ = {sizes['l2']['rho']:.2f} "
                 f"(p = {sizes['l2']['p_value']:.3g}), SSIM ρ = {sizes['ssim']['rho']:.2f} "
                 f"(p = {sizes['ssim']['p_value']:.3g})")
        st.plotly_chart(px.strip(result["ratings"], x="l2", y="rating", color="source_model", height=320),
                        width="stretch", key="sizes")
        if not result["pairs"].empty:
            st.dataframe(result["pairs"], hide_index=True)
