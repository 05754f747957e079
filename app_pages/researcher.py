"""Researcher page (password-protected): build stimuli, watch progress, analyse, export."""
import io
import time

import streamlit as st

from app_pages.common import job_runner, submit_job
from app_pages.study_common import study_engine
from gradviz.attacks.registry import REGISTRY
from gradviz.study import figures as study_figures
from gradviz.study import preregistration, sessions
from gradviz.study.analysis import analyse, export_frame, responses_frame
from gradviz.study.auth import PasswordError, checked_hash, configured_password, login, session_expired
from gradviz.study.clients import client_address
from gradviz.study.db import NotReady, StudyLocked, get_setting, set_setting
from gradviz.study.export import study_archive
from gradviz.study.mixed_model import MixedResult
from gradviz.study.power import run_power_analysis
from gradviz.study.stimuli import StimulusConfig, build_stimuli, study_datasets
from gradviz.study.stimulus_sets import (
    activate_set,
    ensure_can_switch_to,
    stimulus_sets,
    stimulus_zip,
    store_stimuli,
)

st.title("Researcher")
try:
    secrets_section = dict(st.secrets.get("researcher", {}))
except (FileNotFoundError, KeyError, AttributeError):
    secrets_section = {}
password = configured_password(secrets_section)
if password is None:
    st.error("The researcher page is closed: set GRADVIZ_RESEARCHER_PASSWORD or [researcher] password in "
             ".streamlit/secrets.toml to a hash from `python -m gradviz study hash-password` (see the README).")
    st.stop()
try:
    checked_hash(password)
except PasswordError as exc:
    st.error(f"The researcher page is closed: {exc}.")
    st.stop()
if session_expired(st.session_state.get("researcher_seen")):
    if st.session_state.pop("researcher_seen", None) is not None:
        st.info("You were logged out after 30 minutes without activity.")
    with st.form("login"):
        given = st.text_input("Password", type="password", key="password")
        code = st.text_input("Recovery code (optional)", type="password", key="recovery_code",
                             help="Only needed while the site refuses logins because of a flood of attempts: the code "
                                  "`gradviz study hash-password` printed beside your hash lets you past that limit.")
        submitted = st.form_submit_button("Log in")
    if submitted:
        client = client_address(st.context.ip_address, st.context.headers.get("X-Forwarded-For"))
        attempt = login(study_engine(), client, given, password, recovery_code=code)
        if attempt.ok:
            st.session_state["researcher_seen"] = time.time()
            st.rerun()
        elif attempt.ceiling:
            st.error(f"The site is refusing logins for {max(1, round(attempt.wait))} s: too many attempts from many "
                     "addresses. This did not count against you; log in from an address you used before, or enter "
                     "your recovery code.")
        elif attempt.refused:
            st.error(f"Too many attempts; try again in {max(1, round(attempt.wait))} s.")
        else:
            st.error("Wrong password." + (f" The next attempt counts in {attempt.wait:.0f} s." if attempt.wait else ""))
    st.stop()
st.session_state["researcher_seen"] = time.time()
if st.sidebar.button("Log out", key="logout"):
    st.session_state.pop("researcher_seen", None)
    st.rerun()

@st.fragment(run_every=1.0)
def build_progress() -> None:
    """The stimulus build's progress, updating on its own while the job runs."""
    job = job_runner().jobs.get(st.session_state.get("build_job", ""))
    if job is None:
        return
    if job.state == "done":
        st.success(f"Built and activated set {job.result}.")
    elif job.error:
        st.error(f"Building failed: {job.error}")
    else:
        st.progress(job.fraction, text=job.message or "starting…")


engine = study_engine()
sets = stimulus_sets(engine)
active = get_setting(engine, "active_set")
registered = preregistration.current(engine)
tab_progress, tab_analysis, tab_design, tab_stimuli, tab_settings = st.tabs(
    ["Progress", "Analysis", "Design & power", "Stimuli", "Settings"])

with tab_stimuli:
    st.write(f"Active stimulus set: **{active or 'none'}** ({len(sets)} built)")
    with st.form("build"):
        dataset = st.selectbox("Dataset", study_datasets())
        attacks = st.multiselect("Attacks", list(REGISTRY), default=["itgsm", "tgsm"],
                                 format_func=lambda a: REGISTRY[a].label,
                                 help="Each attack × ε × source model is one condition; pixel-budget attacks "
                                      "(JSMA) ignore ε and make one condition per model.")
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
            activate_set(engine, config.set_id(), config.dataset)
            job.report(2, 2, "done")
            return config.set_id()

        try:
            ensure_can_switch_to(engine, config.set_id())  # refuse before minutes of attacks, not after
            st.session_state["build_job"] = submit_job("build stimuli", work).id
        except StudyLocked as error:
            st.error(str(error))
    build_progress()
    if active:
        st.download_button("Download the active stimulus set (zip)", lambda: stimulus_zip(engine, active),
                           f"stimuli-{active}.zip", "application/zip", on_click="ignore")

with tab_settings:
    unregistered = sessions.OPEN_UNREGISTERED
    opened = st.toggle("Let participants start before the design is pre-registered (a pilot)",
                       get_setting(engine, unregistered) == "1", key="open_unregistered",
                       help="Off: participants are told the study is not open yet until you freeze the design.")
    if opened != (get_setting(engine, unregistered) == "1"):
        set_setting(engine, unregistered, "1" if opened else "0")
    anonymous = st.toggle("Let visitors without a participant id take part (anonymous enrolment)",
                          sessions.anonymous_allowed(engine), key="anonymous_enrolment",
                          help="Off (the default in study mode): a link without a valid id shows “this link is not "
                               "valid” and stores nothing. On: each such visitor gets a random id at consent and "
                               "claims a slot of the Latin square.")
    if anonymous != sessions.anonymous_allowed(engine):
        set_setting(engine, sessions.ANONYMOUS, "1" if anonymous else "0")
    with st.form("settings"):
        consent_text = st.text_area("Consent text (Markdown)", get_setting(engine, "consent_text", ""), height=200)
        code = st.text_input("Prolific completion code", get_setting(engine, "completion_code", ""))
        decline = st.text_input("Prolific code for participants who decline or withdraw (a code whose action is "
                                "“request return”)", get_setting(engine, "decline_code", ""))
        if st.form_submit_button("Save"):
            set_setting(engine, "consent_text", consent_text)
            set_setting(engine, "completion_code", code)
            set_setting(engine, "decline_code", decline)
            version = int(get_setting(engine, "consent_version", "0") or 0) + 1
            set_setting(engine, "consent_version", str(version))
            st.success(f"Saved (consent version {version}).")

frame = responses_frame(engine)
result = None if frame.empty else analyse(frame)  # one fit serves both tabs: bootstrap, permutations, mixed model
with tab_progress:
    counts = sessions.progress(engine)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Participants started", counts["started"])
    c2.metric("Completed", counts["completed"])
    c3.metric("Answers stored", counts["answers"])
    c4.metric("Withdrawn", counts["withdrawn"])
    closed = sessions.closed_reason(engine)
    if closed:
        st.info(f"Participants cannot start: {closed}.")
    if registered is None:
        st.warning("This study is not pre-registered yet: freeze the design (Design & power) before recruiting"
                   + (" — participants can start anyway (Settings: pilot)." if not closed else "."))
    elif problems := preregistration.verify(engine):
        st.error("The pre-registration no longer matches the study: " + "; ".join(problems))
    if active:
        st.download_button("Download the study archive (answers, pre-registration, stimuli; zip)",
                           lambda: study_archive(engine), "study-archive.zip", "application/zip",
                           on_click="ignore", key="archive")
    if frame.empty:
        st.info("No answers yet.")
    else:
        st.dataframe(frame.groupby("condition").size().rename("answers").reset_index(), hide_index=True)
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
        mixed = result["mixed"]
        st.subheader("Primary analysis (pre-registered): mixed model")
        if isinstance(mixed, MixedResult):
            st.write(f"{mixed.reference} − mean of the other source models: **{mixed.contrast:+.3f}** rating points "
                     f"(SE {mixed.se:.3f}, z = {mixed.z:.2f}, p = {mixed.p_value:.3g}); {mixed.n_participants} "
                     f"participants, {mixed.n_items} items, {mixed.n_answers} ratings"
                     + ("" if mixed.converged else " — the fit did not converge; read it with care") + ".")
            st.dataframe(mixed.coefficients, hide_index=True)
            st.caption("Variance components: " + ", ".join(f"{k} {v:.3f}" for k, v in mixed.variances.items()))
        else:
            st.info(f"The mixed model cannot be fitted yet: {mixed}")
        st.subheader("Robustness checks")
        for key, title in (("rating", "Mean legitimacy rating (1–7)"), ("target_share", "Share of target answers")):
            table = result[key]
            if table.empty:
                continue
            fig = study_figures.interval_bars(table, f"{title}, 95% participant bootstrap")
            st.plotly_chart(fig, width="stretch", key=f"fig_{key}")
        st.write(f"Sign-flip permutation tests, {result['reference']} against each other model "
                 "(per-participant mean differences, two-sided, 10,000 permutations):")
        st.dataframe(result["tests"], hide_index=True)
        st.write(f"Inter-rater agreement, Krippendorff's α (ordinal): **{result['alpha']:.3f}**")
        sizes = result["sizes"]
        st.write(f"Rating vs perturbation size (Spearman): L2 ρ = {sizes['l2']['rho']:.2f} "
                 f"(p = {sizes['l2']['p_value']:.3g}), SSIM ρ = {sizes['ssim']['rho']:.2f} "
                 f"(p = {sizes['ssim']['p_value']:.3g})")
        st.plotly_chart(study_figures.ratings_by_size(result["ratings"]), width="stretch", key="sizes")
        if not result["pairs"].empty:
            st.dataframe(result["pairs"], hide_index=True)

with tab_design:
    st.subheader("Power analysis")
    st.caption("Simulates whole studies in this stimulus set's Latin-square design from the mixed model and runs "
               "the real analysis on each. Variance components come from the answers so far when at least six "
               "participants answered (a pilot), else from stated priors.")
    with st.form("power"):
        c1, c2, c3 = st.columns(3)
        effect = c1.number_input("Effect: gradreg − others (rating points)", 0.0, 6.0, 0.5, 0.1)
        sims = c2.number_input("Simulated studies per N", 20, 2000, 100, 20)
        max_n = c3.number_input("Largest N tried", 4, 2000, 400)
        run_power = st.form_submit_button("Run the power analysis")
    if run_power and active:
        def power_work(job, effect=float(effect), sims=int(sims), max_n=int(max_n)):
            return run_power_analysis(engine, effect=effect, sims=sims, max_n=max_n,
                                      progress=lambda m: job.report(0, 1, m))

        st.session_state["power_job"] = submit_job("power analysis", power_work).id
    elif run_power:
        st.error("Build and activate a stimulus set first: the simulation uses its design.")
    power_job = job_runner().jobs.get(st.session_state.get("power_job", ""))
    if power_job is not None and power_job.state == "done":
        power = power_job.result
        needed = power.n_required or f"more than {max_n}"
        st.success(f"Participants needed for {power.target:.0%} power at α = {power.alpha}: **{needed}** "
                   f"(assumptions: {power.assumptions['source']})")
        curve = study_figures.power_curve(power.curve, power.target)
        st.plotly_chart(curve, width="stretch", key="power_curve")
        st.session_state["power_result"] = {"n_required": power.n_required, "curve": power.curve,
                                            "assumptions": power.assumptions, "sims": power.sims}
    elif power_job is not None and power_job.error:
        st.error(f"The power analysis failed: {power_job.error}")
    elif power_job is not None:
        @st.fragment(run_every=1.0)
        def power_progress(job=power_job) -> None:
            if job.state == "done" or job.error:
                st.rerun()
            st.progress(0.0, text=job.message or "starting…")

        power_progress()
    st.subheader("Pre-registration")
    if registered is not None:
        st.success(f"Frozen {registered['frozen_at']}, record sha256 `{registered['record_sha256'][:16]}…`")
        st.download_button("Download the pre-registration (Markdown)", preregistration.to_markdown(registered),
                           "preregistration.md", "text/markdown", on_click="ignore", key="prereg_md")
    elif not active:
        st.info("Build a stimulus set first.")
    else:
        with st.form("prereg"):
            hypothesis = st.text_area("Hypothesis", "Adversarial examples made on the gradient-regularized model are "
                                      "rated more like their target class than those made on the other models.")
            planned = st.number_input("Planned participants", 1, 100_000,
                                      int((st.session_state.get("power_result") or {}).get("n_required") or 40))
            freeze = st.form_submit_button("Freeze the design", type="primary")
        if freeze:
            try:
                preregistration.freeze(engine, int(planned), hypothesis,
                                       power=st.session_state.get("power_result"))
                st.rerun()
            except (StudyLocked, NotReady, ValueError) as error:
                st.error(str(error))
