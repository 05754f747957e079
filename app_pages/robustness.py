"""Robustness page: accuracy-vs-ε curves, the source×target matrix, white-box vs transfer, masking flags."""
from dataclasses import asdict

import streamlit as st

from app_pages.common import DEVICE, cards_of, job_status, pick_dataset, submit_once
from gradviz.attacks.registry import REGISTRY, attack_title
from gradviz.evaluation import figures
from gradviz.evaluation.report.claims import facts_of, verdicts
from gradviz.evaluation.runs.matrix import (
    EvalConfig,
    default_models,
    evaluate,
    read_results,
    result_folders,
    write_results,
)
from gradviz.evaluation.runs.paper import PAPER_CURVES_FROM_NORMAL
from gradviz.paths import new_results_folder, user_results_dir

st.title("Robustness")
dataset = pick_dataset()

with st.expander("Run a new evaluation", expanded=False):
    with st.form("evaluate", enter_to_submit=False):
        models = st.multiselect("Models", list(cards_of(dataset)), default=default_models(dataset), key="r_models",
                                help="each is attacked and each attacks the others: the zoo, the paper-scale pair "
                                     "and your own models of this dataset")
        attacks = st.multiselect("Attacks", list(REGISTRY), default=["fgsm", "tgsm"],
                                 format_func=lambda a: REGISTRY[a].label,
                                 help="Pixel-budget attacks (JSMA) ignore ε and report success rates instead.")
        eps_text = st.text_input("ε values", "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7")
        n = st.number_input("Test images", 10, 10000, 256, step=10)
        submitted = st.form_submit_button("Start in the background")
    if submitted:
        try:
            eps = [float(v) for v in eps_text.split(",") if v.strip()]
            if not eps or not attacks or not models or any(e < 0 or e > 1 for e in eps):
                raise ValueError("choose at least one model, one attack and ε values between 0 and 1")
        except ValueError as exc:
            st.error(f"Cannot start: {exc}")
        else:
            config = EvalConfig(dataset=dataset, models=models, attacks=attacks, eps=eps,
                                n=int(n), device=DEVICE)
            out = new_results_folder(dataset)

            def work(job, config=config, out=out):
                result = evaluate(config, cache_dir=user_results_dir() / "cache", progress=False,
                                  on_progress=lambda d, t, m: job.report(d, t, m))
                return write_results(result, out)

            submit_once("eval_job", asdict(config), f"evaluate {dataset}", work)


job_status("eval_job", "Evaluating", "blocks", "Evaluation")

folders = {k: v for k, v in result_folders().items() if k.startswith(dataset)}
if not folders:
    st.info(f"No evaluation results for {dataset} yet: run one above or with `python -m gradviz evaluate`.")
    st.stop()
choice = st.selectbox("Results", list(folders), key=f"results_{dataset}", persist_state="session")
result = read_results(folders[choice])
rows = result.rows
prov = result.provenance
st.caption(f"{prov['config']['n']} test images · {len(prov['models'])} models · device {prov['device']} · "
           f"{prov['seconds']:.0f} s · finished {prov['finished']}")
claims = verdicts(facts_of(result), result) if not rows.empty else []
if claims:
    st.markdown("**Which of the paper's claims held here.** " + " ".join(
        f"{c.claim}: **{c.verdict}**." for c in claims))
    with st.expander("The numbers behind each verdict"):
        st.markdown("\n".join(f"- **{c.claim}: {c.verdict}** ({c.detail}" for c in claims))
for attack, block in result.l0.groupby("attack", sort=False):
    st.subheader(f"{attack_title(attack)} ({block.budget.iloc[0]}, first {int(block.n.iloc[0])} images)")
    st.markdown("Success rate: rows made on, columns evaluated on (white-box on the diagonal)")
    st.dataframe(block.pivot_table(index="source", columns="target", values="success_rate", sort=False)
                 .style.format("{:.0%}"), width="stretch")
if rows.empty:
    st.stop()
attack = st.radio("Attack", list(rows.attack.unique()), format_func=attack_title, horizontal=True,
                  key="rob_attack")
st.plotly_chart(figures.accuracy_curves(rows, attack, paper_overlay=dataset == "mnist"), width="stretch",
                key="curves")
if dataset == "mnist" and attack in PAPER_CURVES_FROM_NORMAL:
    st.caption(f"Crosses: the paper's accuracies on {attack_title(attack)} examples made on its normal model "
               "(256 images), in the colour of our model with the same defense.")
eps_values = sorted(rows.eps.unique())
eps = st.select_slider("ε for the matrix", eps_values, value=min(eps_values, key=lambda e: abs(e - 0.3)),
                       key="matrix_eps")
# One under the other, each the page's width: side by side, six model names under the heatmap ran into each other.
st.plotly_chart(figures.transfer_heatmap(rows, attack, eps), width="stretch", key="heatmap")
st.plotly_chart(figures.whitebox_transfer_figure(rows, attack), width="stretch", key="wb")
st.subheader("Gradient masking")
if result.masking.empty:
    st.write("This result folder has no masking check.")
else:
    # A table, not a grid: the reason is a sentence and must be read whole, not cut at a column's edge.
    st.table(result.masking.set_index("model").style.format(precision=3, na_rep="–"))
with st.expander("All rows"):
    st.dataframe(rows, hide_index=True, width="stretch")
    st.download_button("Download results.csv", rows.to_csv(index=False), "results.csv", "text/csv",
                       on_click="ignore")
