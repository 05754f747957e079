"""Opening one dashboard page under AppTest, as a user who clicked it in the navigation."""
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def page(name: str, timeout: float = 180) -> AppTest:
    """The app run once, then switched to app_pages/<name>.py and run again until its background work is done."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(f"app_pages/{name}.py")
    return settle(at.run())


def pending(at: AppTest) -> bool:
    """Whether the page shows a placeholder for a computation still going in the background."""
    from app_pages.background import PENDING

    return any(PENDING in i.value for i in at.info)


def settle(at: AppTest, timeout: float = 300) -> AppTest:
    """Wait for the page's background computations and run it again, as the page's own poll does in a browser,
    until it shows no placeholder."""
    from app_pages.background import page_runner

    deadline = time.monotonic() + timeout
    while pending(at):
        runner = page_runner()
        for job in [j for j in runner.jobs.values() if j.finished is None]:
            runner.wait(job, timeout=max(deadline - time.monotonic(), 1))
        if time.monotonic() > deadline:
            raise TimeoutError("the page's background work did not finish")
        at.run()
    return at
