"""Opening one dashboard page under AppTest, as a user who clicked it in the navigation."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def page(name: str, timeout: float = 180) -> AppTest:
    """The app run once, then switched to app_pages/<name>.py and run again."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(f"app_pages/{name}.py")
    return at.run()
