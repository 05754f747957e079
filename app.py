"""gradviz dashboard entry point: `streamlit run app.py`. A router only; pages live in app_pages/."""
import streamlit as st

st.set_page_config(page_title="gradviz", page_icon="🧭", layout="wide")

pages = {
    "Explore": [
        st.Page("app_pages/models.py", title="Models", icon="🗂️", default=True),
        st.Page("app_pages/saliency.py", title="Saliency", icon="🔥"),
        st.Page("app_pages/attack_lab.py", title="Attack lab", icon="⚔️"),
        st.Page("app_pages/robustness.py", title="Robustness", icon="🛡️"),
        st.Page("app_pages/train.py", title="Train", icon="🏋️"),
    ],
}
st.navigation(pages).run()
