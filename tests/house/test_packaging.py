"""gradviz as Python users install it: `pip install .` gives an importable package and a `gradviz` command, and the
core works without the extras (dashboard, study, Ray)."""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ["streamlit", "streamlit_drawable_canvas", "ray", "sqlalchemy", "psycopg", "statsmodels",
                 "krippendorff", "psutil", "pyarrow"]
BLOCKER = f'''"""Makes the extras' packages absent in this virtualenv (they are visible through tested-deps.pth)."""
import importlib.abc
import sys

BLOCKED = {set(EXTRA_MODULES)!r}


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Absent())
'''


def _fresh_venv(tmp_path: Path, core_only: bool) -> Path:
    """A new virtualenv whose dependencies are this environment's tested ones (seen through a .pth file, so pip
    resolves every declared requirement against them and installs only gradviz itself: no second copy of torch),
    with gradviz installed from the checkout; `core_only` hides every extra's packages, as `pip install gradviz`
    on a clean machine would leave them out."""
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    site = subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "tested-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    if core_only:
        Path(site, "_gradviz_absent_extras.py").write_text(BLOCKER)
        Path(site, "zz-absent-extras.pth").write_text("import _gradviz_absent_extras\n")
    install = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
                             capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-3000:]
    return env


@pytest.mark.packaging
@pytest.mark.slow
def test_pip_install_into_a_fresh_virtualenv_gives_a_working_gradviz_command(tmp_path):
    env = _fresh_venv(tmp_path, core_only=False)
    command = subprocess.run([str(env / "bin" / "gradviz"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert command.returncode == 0 and "train" in command.stdout and "evaluate" in command.stdout, command.stderr
    where = subprocess.run([str(env / "bin" / "python"), "-c", "import gradviz, gradviz.cli.main; print(gradviz.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert str(env) in where  # the installed copy, not the checkout


@pytest.mark.packaging
@pytest.mark.slow
def test_the_core_alone_evaluates_a_zoo_model_and_names_the_extra_a_command_needs(tmp_path):
    env = _fresh_venv(tmp_path, core_only=True)
    python, gradviz = str(env / "bin" / "python"), str(env / "bin" / "gradviz")
    for module in ("streamlit", "ray", "sqlalchemy"):
        absent = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, cwd=tmp_path)
        assert absent.returncode != 0 and "No module named" in absent.stderr, module
    out = tmp_path / "eval"
    run = subprocess.run([gradviz, "evaluate", "--models", str(ROOT / "models" / "mnist-normal.json"), "--attacks",
                          "fgsm", "--eps", "0,0.2", "--n", "50", "--device", "cpu", "--no-report", "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(out.glob("*.csv"))
    study = subprocess.run([gradviz, "study", "status"], capture_output=True, text=True, cwd=tmp_path)
    assert study.returncode == 2
    assert study.stderr.strip().splitlines()[-1].endswith("pip install 'gradviz[study]'"), study.stderr[-2000:]


@pytest.mark.parametrize("module, extra", [("streamlit", "app"), ("ray", "ray"), ("sqlalchemy", "study"),
                                           ("ray.tune", "ray"), ("torch", None)])
def test_a_missing_extra_is_one_line_naming_the_install_command(module, extra):
    from gradviz.cli.main import missing_extra

    message = missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module))
    assert message is None if extra is None else message.endswith(f"pip install 'gradviz[{extra}]'")


@pytest.mark.packaging
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") != "true", reason="checks what scripts/install.sh left (CI)")
def test_the_install_script_puts_the_gradviz_command_on_the_virtualenvs_path():
    command = Path(sys.executable).parent / "gradviz"
    assert command.is_file(), "scripts/install.sh should `pip install -e .` gradviz itself"
    info = subprocess.run([str(command), "data", "info", "mnist"], capture_output=True, text=True)
    assert info.returncode == 0 and "mnist" in info.stdout, info.stderr[-2000:]
