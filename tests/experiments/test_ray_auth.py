"""Ray's token authentication, as the README's cluster recipe sets it up, on loopback: a driver with the cluster's
token runs work; one without it, or with another token, is refused."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchmarks.study_load import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RAY = Path(sys.executable).parent / "ray"
DRIVER = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
          "print('answer', ray.get(ray.remote(lambda: 41 + 1).remote()))")


def driver(address: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, address], env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def short_tmp():
    """Ray's sockets live under its temp dir, and a Unix socket path may not exceed 107 bytes: pytest's tmp_path
    is too deep, so the head gets a short folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def token_cluster(short_tmp):
    """A one-node head on 127.0.0.1 with RAY_AUTH_MODE=token and a generated token, stopped with its group."""
    tmp_path = short_tmp
    token = secrets.token_hex(32)
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "HOME": str(tmp_path)}
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
                             str(port), "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats",
                             "--temp-dir", str(tmp_path / "ray")], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and head.poll() is None and not (tmp_path / "ray" / "session_latest").exists():
        time.sleep(0.5)  # the head writes its session link once it runs; a driver before that waits for minutes
    if head.poll() is not None or time.time() >= deadline:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail(f"the token head did not come up: {head.stderr.read().decode()[-2000:]}")
    yield address, env
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def test_a_driver_needs_the_clusters_token(token_cluster):
    address, env = token_cluster
    for _ in range(20):  # the head's services may still be starting
        allowed = driver(address, env)
        if allowed.returncode == 0:
            break
        time.sleep(2)
    assert "answer 42" in allowed.stdout, allowed.stderr[-2000:]
    wrong = driver(address, {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    assert wrong.returncode != 0 and "answer" not in wrong.stdout
    plain = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    none = driver(address, plain)
    assert none.returncode != 0 and "answer" not in none.stdout


def test_gradviz_refuses_a_remote_cluster_without_token_authentication(monkeypatch):
    from gradviz.experiments.runner import connect

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(ValueError, match="RAY_AUTH_MODE=token"):
        connect("10.1.2.3:6379")
