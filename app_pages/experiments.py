"""Experiments page: runs of `python -m gradviz zoo build | sweep`, their curves, and their models."""
import streamlit as st

from gradviz.experiments.plan import default_results
from gradviz.experiments.runs import METRIC_LABELS, adopt_model, curve_figure, curves, list_runs

st.title("Experiments")
st.caption(f"Trials under `{default_results()}`: running, finished, failed, or cut off and resumable "
           "(run the same `zoo` command again to resume them).")

runs = list_runs()
if runs.empty:
    st.info("No runs yet. Start one: `python -m gradviz zoo sweep mnist gradreg-y` (local Ray), or "
            "`python -m gradviz zoo build mnist --address auto` on a Ray cluster.")
    st.stop()

states = runs.state.str.split(",").str[0].value_counts()
st.write(" · ".join(f"**{count}** {state}" for state, count in states.items()))
if st.button("Refresh", icon=":material/refresh:"):
    st.rerun()
shown = runs.drop(columns=["folder", "card"]).dropna(axis="columns", how="all")  # no sweep columns without sweeps
st.dataframe(shown, hide_index=True, width="stretch",
             column_config={"accuracy": st.column_config.NumberColumn("held-out acc.", format="%.4f"),
                            "lam": st.column_config.NumberColumn("λ"),
                            "updated": st.column_config.DatetimeColumn("last report", format="YYYY-MM-DD HH:mm")})

st.subheader("Curves")
sweeps = sorted(s for s in runs.sweep.dropna().unique())
scope = st.selectbox("Runs", ["every run", *[f"sweep {s}" for s in sweeps]])
chosen = runs if scope == "every run" else runs[runs.sweep == scope.removeprefix("sweep ")]
names = st.multiselect("Trials", list(chosen.name), default=list(chosen.name[:8]))
metric = st.selectbox("Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get, index=2)
st.plotly_chart(curve_figure(curves(chosen[chosen.name.isin(names)]), metric), width="stretch")
st.caption("Seeds of one sweep λ are drawn as their mean with a band from the lowest to the highest seed. "
           "Held-out accuracy is on held-out training digits for sweeps; for zoo builds it is on the first test "
           "digits, for monitoring only (nothing is chosen by it).")

st.subheader("Use a finished model")
finished = runs[runs.state == "finished"]
if finished.empty:
    st.caption("No finished trial yet.")
else:
    pick = st.selectbox("Finished trial", list(finished.name))
    if st.button("Add to my models", icon=":material/add:"):
        path = adopt_model(finished.set_index("name").card[pick])
        st.success(f"Added as a user model ({path}); the Saliency, Attack lab and Robustness pages list it now.")
