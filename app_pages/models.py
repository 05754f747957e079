"""Models page: the committed zoo and the user's own models, as a table of cards."""
import streamlit as st

from gradviz.nets.catalog import display_table, model_table

st.title("gradviz")
st.caption("Input-gradient regularization, saliency and adversarial robustness — "
           "Ross & Doshi-Velez, AAAI 2018 (arXiv:1711.09404)")

table = model_table()
if table.empty:
    st.warning("No models found. Train one with `python -m gradviz train` or restore `models/` from git.")
    st.stop()

details = st.toggle("More columns (test images, where it trained, data source)", key="model_details")
for dataset, group in table.groupby("dataset", sort=True):
    st.subheader(f"{dataset} — {len(group)} models")
    st.dataframe(
        display_table(group, details), hide_index=True, width="stretch",
        column_config={"clean accuracy": st.column_config.ProgressColumn("clean acc.", format="percent",
                                                                         min_value=0.0, max_value=1.0, width="small")},
    )
st.caption(f"{len(table)} models: {(table.origin == 'zoo').sum()} in the committed zoo, "
           f"{(table.origin == 'user').sum()} trained by you (`python -m gradviz models` lists them too).")
