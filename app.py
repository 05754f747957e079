"""gradviz dashboard entry point: `streamlit run app.py`. A router only; pages live in app_pages/.

Participants (a URL with ?PROLIFIC_PID=, ?pid= or ?participant) see the study page alone, with no
navigation: the researcher page is not even routed for them, and it checks its password itself.
In study mode (GRADVIZ_MODE=study, what deploy/ runs) the Explore pages are not routed for anyone.
"""
import streamlit as st

from app_pages.errors import run_page as run
from gradviz.study.deployment import study_only

st.set_page_config(page_title="gradviz", page_icon=":material/insights:", layout="wide")

study = st.Page("app_pages/study.py", title="Study", icon=":material/edit_note:", url_path="study")
researcher = st.Page("app_pages/researcher.py", title="Researcher", icon=":material/lock:")
qp = st.query_params
if any(k in qp for k in ("PROLIFIC_PID", "pid", "participant")):
    # A hidden default page that forwards to /study: the study keeps its URL and nothing else is routed.
    def to_study() -> None:
        st.switch_page(study, query_params=st.query_params.to_dict())

    run(st.navigation([st.Page(to_study, title="Study", default=True, visibility="hidden"), study],
                      position="hidden"))
elif study_only():
    run(st.navigation({"Human study": [study, researcher]}))
else:
    from app_pages.warm_up import warm_up

    explore = {
        "Explore": [
            st.Page("app_pages/models.py", title="Models", icon=":material/table_view:", default=True),
            st.Page("app_pages/saliency.py", title="Saliency", icon=":material/gradient:"),
            st.Page("app_pages/sanity.py", title="Sanity checks", icon=":material/fact_check:", url_path="sanity"),
            st.Page("app_pages/interpretability.py", title="Interpretability", icon=":material/analytics:"),
            st.Page("app_pages/attack_lab.py", title="Attack lab", icon=":material/bolt:"),
            st.Page("app_pages/grids.py", title="Target grids", icon=":material/grid_view:", url_path="grids"),
            st.Page("app_pages/robustness.py", title="Robustness", icon=":material/shield:"),
            st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
            st.Page("app_pages/bring.py", title="Your model & data", icon=":material/upload_file:", url_path="bring"),
            st.Page("app_pages/annotate.py", title="Annotate", icon=":material/draw:", url_path="annotate"),
            st.Page("app_pages/experiments.py", title="Experiments", icon=":material/lab_panel:"),
        ],
        "Human study": [study, researcher],
    }
    try:
        run(st.navigation(explore))
    finally:  # after the page (also one that stopped early): the next page finds torch and the figures imported
        warm_up()
