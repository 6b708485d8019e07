"""``flowmetal serve`` and ``flowmetal token`` as a user runs them: real processes, a
real store, a real client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import requests

from .test_remote_cli import fm, ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tokens_made_listed_and_revoked_from_the_command_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWMETAL_HOME",
                                                             "FLOWMETAL_SERVER")}
    store = str(tmp_path / "store")
    made = fm(env, "--store", store, "token", "create", "--name", "ci")
    token = ok(made).strip()
    assert token.startswith("fm_") and "shown this once" in made.stderr
    reader = ok(fm(env, "--store", store, "token", "create", "--scope", "read")).strip()
    listed = ok(fm(env, "--store", store, "token", "list"))
    assert "ci" in listed and "write" in listed and "read" in listed
    assert token not in listed and reader not in listed  # only their digests are kept
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "flowmetal", "--store", store, "serve",
                              "--listen", f"127.0.0.1:{port}", "--public-url",
                              f"http://127.0.0.1:{port}"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 30
        while True:
            try:
                assert requests.get(base + "/healthz", timeout=5).json() == {"ok": True}
                break
            except requests.ConnectionError:
                assert time.monotonic() < end, "flowmetal serve did not start"
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(base + "/api/v1/tasks", headers=auth, timeout=10).status_code == 200
        token_id = next(line.split()[0] for line in listed.splitlines()
                        if line.endswith("ci"))
        assert f"token {token_id} revoked" in ok(fm(env, "--store", store, "token", "revoke",
                                                    token_id))
        assert requests.get(base + "/api/v1/tasks", headers=auth, timeout=10).status_code == 403
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert "listening on" in err
