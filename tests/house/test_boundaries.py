"""House rules that are cheap to check: the layers hold, the library never imports streamlit, nothing unpickles."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def library_modules() -> list[str]:
    """Every module under gradviz/, sub-packages included (the entry point, which runs the CLI, aside)."""
    paths = sorted((ROOT / "gradviz").rglob("*.py"))
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in paths]
    return [n.removesuffix(".__init__") for n in names if not n.endswith("__main__")]


def test_the_boundary_check_sees_every_sub_package():
    modules = library_modules()
    assert {"gradviz.study.db", "gradviz.attacks.registry", "gradviz.paths", "gradviz.experiments"} <= set(modules)


def test_gradviz_never_imports_streamlit_even_at_run_time():
    code = ("import importlib, sys\n"
            f"for m in {library_modules()!r}: importlib.import_module(m)\n"
            "assert 'streamlit' not in sys.modules, 'gradviz imported streamlit'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_layer_contract_of_pyproject_holds():
    """import-linter: no package imports one above it, siblings stay independent (see pyproject.toml)."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 kept, 0 broken" in result.stdout


def test_no_unpickling_in_the_code():
    for path in [*ROOT.glob("gradviz/**/*.py"), *ROOT.glob("*.py"), *ROOT.glob("app_pages/*.py")]:
        text = path.read_text()
        assert "pickle.load" not in text and "torch.load(" not in text, path
