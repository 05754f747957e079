"""gradviz dashboard entry point: `streamlit run app.py`. A router only; pages live in app_pages/."""
import streamlit as st

st.set_page_config(page_title="gradviz", page_icon="🧭", layout="wide")

pages = [
    st.Page("app_pages/models.py", title="Models", icon="🗂️", default=True),
]
st.navigation(pages).run()
