"""A Gradio app in a subprocess on a free port, for the benchmarks that talk to it over HTTP.

    with running_app([sys.executable, "app.py"], temp_dir, log_path) as app:
        ...  # app.url, app.process, app.up_s

The app gets its own GRADIO_TEMP_DIR (where its uploads land), its output goes to `log_path`, and it is
stopped when the block ends, whatever happened inside.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class AppDidNotStart(RuntimeError):
    """The app exited or did not answer in time; the message ends with the end of its output."""


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    up_s: float  # from starting the process to its first answer to /config
    log_path: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, started: float, timeout: float) -> float:
    """Seconds from `started` until the app answers /config."""
    name = Path(process.args[-1]).name
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise AppDidNotStart(f"{name} exited with code {process.returncode} before answering:\n"
                                 f"{tail(log_path)}")
        try:
            if httpx.get(url + "/config", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AppDidNotStart(f"{name} did not answer within {timeout:.0f} s:\n{tail(log_path)}")


@contextmanager
def running_app(argv: list[str], temp_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                timeout: float = 180) -> Iterator[RunningApp]:
    """`argv` started in the repository root with Gradio's settings for a local, private server on a free port;
    yields once it answers. Raises AppDidNotStart if it exits first or takes longer than `timeout` seconds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_TEMP_DIR=str(temp_dir), GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        up_s = wait_until_up(url, process, log_path, started, timeout)
        yield RunningApp(url, process, up_s, log_path)
    finally:
        stop_app(process)
