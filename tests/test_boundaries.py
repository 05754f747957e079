"""House rules that are cheap to check: the library never imports streamlit, nothing unpickles."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gradviz_never_imports_streamlit():
    modules = sorted(p.stem for p in (ROOT / "gradviz").glob("*.py") if p.stem != "__main__")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module('gradviz.' + m if m != '__init__' else 'gradviz')\n"
            "assert 'streamlit' not in sys.modules, 'gradviz imported streamlit'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_no_unpickling_in_the_code():
    for path in [*ROOT.glob("gradviz/**/*.py"), *ROOT.glob("*.py"), *ROOT.glob("app_pages/*.py")]:
        text = path.read_text()
        assert "pickle.load" not in text and "torch.load(" not in text, path
