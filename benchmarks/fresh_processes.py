"""The parts measured in new processes: a cold start (benchmarks/cold_start.py), and app.py end to end, asked
through gradio_client and through the web page's own protocol beside a do-nothing Gradio app
(benchmarks/noop_app.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from gradio_client import Client, handle_file

from benchmarks.app_process import running_app
from benchmarks.classifier_speed import META
from benchmarks.memory import peak_rss_mb
from benchmarks.timing import interleaved, summary

ROOT = Path(__file__).resolve().parent.parent


# ---- cold start ------------------------------------------------------------------------------------------

def one_cold_start(weights: Path, image: Path, batch: int, eager: bool) -> dict:
    """benchmarks/cold_start.py in a fresh `python`: seconds from launching it to each of its steps.
    Raises subprocess.CalledProcessError if it fails."""
    age, sex, site = META
    argv = [sys.executable, "-m", "benchmarks.cold_start", str(weights), str(image),
            "--age", str(age), "--sex", sex, "--site", site, "--batch", str(batch), *(["--eager"] if eager else [])]
    t0 = time.time()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"to_first_answer_s": round(r["answered"] - t0, 2), "interpreter_s": round(r["started"] - t0, 2),
            "import_s": round(r["imported"] - r["started"], 2), "load_s": round(r["loaded"] - r["imported"], 2),
            "first_predict_s": round(r["answered"] - r["loaded"], 2), "runner": r["runner"],
            "peak_rss_mb": round(r["peak_rss_mb"])}


def cold_start(weights: Path, image: Path, runs: int, batch: int) -> dict:
    """`runs` cold starts on the fast path, one on the eager fallback (without ONNX Runtime)."""
    out = {}
    for label, eager in (("fast", False), ("eager_fallback", True)):
        try:
            results = [one_cold_start(weights, image, batch, eager) for _ in range(1 if eager else runs)]
        except subprocess.CalledProcessError as e:
            return {"error": e.stderr[-2000:]}
        out[label] = {"runs": results, "to_first_answer_s": float(np.median([r["to_first_answer_s"] for r in results])),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
    out["note"] = f"Target check: the median of the runs. Peak RSS includes a batch of {batch} after the first answer"
    return out


# ---- the app end to end ----------------------------------------------------------------------------------

class WebClient:
    """What the app's web page does for one Analyze, over HTTP: upload the photo, join the queue, read the
    server-sent events until the answer. gradio_client does the same but polls its own message queue every
    50 ms (gradio_client/utils.py), which adds its own tens of milliseconds to every answer."""

    def __init__(self, url: str, api_name: str = "predict"):
        self.url, self.http = url, httpx.Client(timeout=60)
        config = self.http.get(url + "/config").json()
        dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
        self.fn_index, self.n_inputs = dep["id"], len(dep["inputs"])

    def upload(self, image: Path) -> dict:
        with open(image, "rb") as f:
            files = {"files": (image.name, f, "image/jpeg")}
            paths = self.http.post(self.url + "/gradio_api/upload", files=files).json()
        return {"path": paths[0], "orig_name": image.name, "meta": {"_type": "gradio.FileData"}}

    def __call__(self, image: Path, *values):
        data = [self.upload(image), *values] + [None] * (self.n_inputs - 1 - len(values))  # None: the gr.State
        session = uuid.uuid4().hex
        self.http.post(self.url + "/gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index, "session_hash": session, "event_data": None}).raise_for_status()
        with self.http.stream("GET", self.url + "/gradio_api/queue/data", params={"session_hash": session}) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        if not msg.get("success"):
                            raise RuntimeError(f"the app answered with an error: {msg.get('output')}")
                        return msg["output"]["data"]
        raise RuntimeError("the event stream ended without an answer")

    def close(self):
        self.http.close()


def time_clients(urls: dict[str, str], image: Path, requests: int, started: float) -> dict:
    """Time to the app's first answer (from `started`), then `requests` rounds of each client on each app,
    taking turns: {name}_gradio_client and {name}_web for each name in `urls`."""
    clients = {name: Client(url, verbose=False, download_files=False) for name, url in urls.items()}
    web = {name: WebClient(url) for name, url in urls.items()}
    try:
        answer = web["app"](image, *META)
        if not (isinstance(answer[0], dict) and answer[0].get("confidences")):
            raise RuntimeError(f"no probabilities in the answer: {str(answer)[:300]}")
        first = time.perf_counter() - started
        paths = {}
        for name in urls:
            paths[f"{name}_gradio_client"] = (
                lambda c=clients[name]: c.predict(handle_file(str(image)), *META, api_name="/predict"))
            paths[f"{name}_web"] = lambda w=web[name]: w(image, *META)
        times = interleaved(paths, requests, 2)
    finally:
        for w in web.values():
            w.close()
    return {"to_first_answer_s": round(first, 2), **{k: summary(v) for k, v in times.items()}}


def app(weights: Path, image: Path, requests: int) -> dict:
    """app.py in a subprocess, asked through gradio_client and through the web page's own protocol (WebClient),
    next to a do-nothing Gradio app with the same inputs and outputs (what Gradio and each client cost alone)."""
    if not (ROOT / "app.py").is_file():
        return {"skipped": "no app.py"}
    app_argv, noop_argv = [sys.executable, "app.py"], [sys.executable, "-m", "benchmarks.noop_app"]
    try:
        with (tempfile.TemporaryDirectory() as tmp,
              running_app(app_argv, Path(tmp), Path(tmp) / "app.log", {"SKINLESION_WEIGHTS": str(weights)}) as real,
              running_app(noop_argv, Path(tmp), Path(tmp) / "noop_app.log") as noop):
            started = time.perf_counter() - real.up_s
            timed = time_clients({"app": real.url, "noop": noop.url}, image, requests, started)
            return {"up_s": round(real.up_s, 2), **timed, "peak_rss_mb": round(peak_rss_mb(real.process.pid))}
    except Exception as e:  # reported, not fatal
        return {"error": f"{type(e).__name__}: {e}"[:1000]}
