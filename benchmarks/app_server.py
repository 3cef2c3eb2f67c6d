"""The app as the benchmarks run it: its own uvicorn process on a free loopback port, waited for until /readyz."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int, env: dict[str, str]) -> subprocess.Popen:
    """uvicorn over api.app:create_app with `env`'s settings; no access log (it would print query strings)."""
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                            env=env, cwd=REPO)


def wait_for_app(base_url: str, process: subprocess.Popen, timeout: float = 600) -> None:
    """Until /readyz answers 200 (the router loads in the lifespan); fails at once if the process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the app was not ready in {timeout:.0f} s")
