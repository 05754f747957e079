"""gradviz as Python users install it: `pip install .` gives an importable package and a `gradviz` command."""
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pip_install_into_a_fresh_virtualenv_gives_a_working_gradviz_command(tmp_path):
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    site = subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies are the tested ones of this environment (seen through a .pth file), so pip resolves every
    # declared requirement against them and installs only gradviz itself: no second copy of torch.
    Path(site, "tested-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q",
                              str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-3000:]
    command = subprocess.run([str(env / "bin" / "gradviz"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert command.returncode == 0 and "train" in command.stdout and "evaluate" in command.stdout, command.stderr
    where = subprocess.run([str(env / "bin" / "python"), "-c", "import gradviz, gradviz.cli.main; print(gradviz.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert str(env) in where  # the installed copy, not the checkout
