"""Many visitors, each with a photo of their own: the app's memory stays within its cap on the photos it keeps.

    python benchmarks/sessions.py                      # 200 sessions, ~8 MB photos, the app's default cap (256 MB)
    python benchmarks/sessions.py --sessions 20 --photo-mb 2 --session-mb 16 --upload-seconds 10   # a quick look

It starts `python app.py` (benchmarks/app_process.py) with SKINLESION_SESSION_MB and SKINLESION_UPLOAD_SECONDS and
talks to it as the page does: each session has its own session hash, uploads its photo to /gradio_api/upload and
presses Analyze through the queue (/gradio_api/queue/join), --parallel sessions at a time. Every photo is distinct:
one JPEG of about --photo-mb (a photo enlarged, with grain), carrying the session's number in a comment segment.

  first      every session's first Analyze: answered, or told clearly to retry ("queue is full").
  second     once Gradio's cleaner has deleted the uploads, every session presses Analyze again, on the same photo:
             the sessions whose photo is still kept in memory get an answer, the others are asked to upload it
             again; nothing else.

The app's resident memory is read after a warm-up, sampled every 0.2 s while the sessions run (the peak), and read
after each part. Prints a markdown table and writes everything to JSON (--out).
"""
from __future__ import annotations

import argparse
import io
import json
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

# `python benchmarks/sessions.py` puts benchmarks/ on the path, not the repository root that holds the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.app_process import AppDidNotStart, running_app, tail
from benchmarks.load_test import files_in, wait_for_cleanup, write_json
from benchmarks.memory import rss_mb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "benign_ISIC_0032452.jpg"
REQUEST_TIMEOUT_S = 600
OUTCOMES = ("answered", "upload_again", "busy", "user_error", "server_error", "failed")


# ---- the photos -----------------------------------------------------------------------------------------

def big_photo(megabytes: float, seed: int = 0) -> bytes:
    """A JPEG of about `megabytes`: the example enlarged to a phone photo's size, with grain (which JPEG keeps)."""
    rng = np.random.default_rng(seed)
    side = 2000
    for _ in range(3):  # the size grows with the pixels: two corrections are close enough
        img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((side * 4 // 3, side), Image.Resampling.BICUBIC))
        grain = rng.normal(0, 12, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img + grain, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
        side = int(side * (megabytes * 2**20 / buf.tell()) ** 0.5)
    return buf.getvalue()


def distinct(jpeg: bytes, number: int) -> bytes:
    """The same picture with a comment segment after the start marker: other bytes, so its own upload file."""
    comment = f"session {number}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


# ---- one session, as the page talks to the app -----------------------------------------------------------

class PageSession:
    """A browser session: its own session hash; the photo uploaded once, then Analyze as often as wanted."""

    def __init__(self, url: str, fn_index: dict[str, int]):
        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S)
        self.hash, self.fn_index = secrets.token_hex(8), fn_index
        self.photo: dict | None = None

    def upload(self, name: str, data: bytes) -> None:
        r = self.http.post("/gradio_api/upload", files=[("files", (name, data, "image/jpeg"))])
        r.raise_for_status()
        self.photo = {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def analyze(self) -> tuple[str, str]:
        """The page's Analyze (/predict, with the session's kept photo): (outcome, message), one of OUTCOMES and
        the app's message when it was not an answer."""
        return self.call("predict", [self.photo, None, None, None, None])

    def call(self, api_name: str, data: list) -> tuple[str, str]:
        r = self.http.post("/gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index[api_name], "session_hash": self.hash, "event_data": None,
            "trigger_id": None})
        if r.status_code == 503:
            return "busy", r.text[:200]
        r.raise_for_status()
        event = r.json()["event_id"]
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("event_id") == event and msg.get("msg") == "process_completed":
                        return outcome(msg)
        return "failed", "the stream ended without an answer"

    def close(self) -> None:
        self.http.close()


def outcome(msg: dict) -> tuple[str, str]:
    if msg.get("success"):
        return "answered", ""
    error = str((msg.get("output") or {}).get("error") or "")
    if "upload the photo again" in error:
        return "upload_again", error
    if "queue is full" in error.lower():
        return "busy", error
    return ("user_error" if error else "server_error"), error[:200]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.messages: dict[str, str] = {}

    def record(self, kind: str, message: str = "") -> None:
        with self.lock:
            self.counts[kind] += 1
            if message:
                self.messages.setdefault(kind, message)


def attempt(tally: Tally, fn) -> None:
    try:
        tally.record(*fn())
    except Exception as e:  # every outcome is counted, none stops the run
        tally.record("failed", f"{type(e).__name__}: {str(e)[:200]}")


class PeakRss:
    """The largest resident memory of a process, sampled every `every` seconds while the block runs."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak, self.done = pid, every, 0.0, threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self

    def watch(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self.done.wait(self.every)

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


# ---- the run --------------------------------------------------------------------------------------------

def fn_indices(url: str) -> dict[str, int]:
    """The events' numbers by API name (the queue is told which event to run by its number)."""
    config = httpx.get(url + "/config", timeout=30).json()
    return {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}


def warm_up(url: str, fn_index: dict[str, int], photo: bytes, parallel: int) -> None:
    """Requests like the visitors' at the same concurrency, through /assess, which keeps no photo: the network's
    memory for its largest batch and the allocator's per-thread pools are in place before memory is measured."""
    def run(i: int):
        s = PageSession(url, fn_index)
        s.upload(f"warm_{i}.jpg", distinct(photo, 10_000 + i))
        s.call("assess", [s.photo, None, None, None])
        s.close()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(run, range(3 * parallel)))


def first_round(url: str, fn_index: dict[str, int], photo: bytes, args) -> tuple[list[PageSession], Tally]:
    sessions, tally = [PageSession(url, fn_index) for _ in range(args.sessions)], Tally()

    def run(i: int):
        s = sessions[i]
        s.upload(f"spot_{i:03d}.jpg", distinct(photo, i))
        return s.analyze()

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda i: attempt(tally, lambda: run(i)), range(args.sessions)))
    return sessions, tally


def second_round(sessions: list[PageSession], parallel: int) -> Tally:
    tally = Tally()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda s: attempt(tally, s.analyze), [s for s in sessions if s.photo]))
    return tally


def run_parts(app, args, temp_dir: Path) -> dict:
    pid = app.process.pid
    kept = files_in(temp_dir)  # the examples' copies, made at start-up; they stay
    fn_index = fn_indices(app.url)
    photo = big_photo(args.photo_mb)
    warm_up(app.url, fn_index, photo, args.parallel)
    results = {"startup_s": round(app.up_s, 1), "photo_mb": round(len(photo) / 2**20, 2),
               "rss_warm_mb": round(rss_mb(pid), 1)}
    print(f"first: {args.sessions} sessions, {results['photo_mb']} MB photos, {args.parallel} at a time ...",
          flush=True)
    start = time.perf_counter()
    with PeakRss(pid) as peak:
        sessions, first = first_round(app.url, fn_index, photo, args)
    results["first"] = {**first.counts, "wall_s": round(time.perf_counter() - start, 1), "errors": first.messages}
    results["rss_after_first_mb"], results["rss_peak_first_mb"] = round(rss_mb(pid), 1), round(peak.peak, 1)
    print(f"waiting for the uploads to be cleaned away (kept {args.upload_seconds} s) ...", flush=True)
    results["cleanup_s"] = wait_for_cleanup(temp_dir, kept, timeout=2 * args.upload_seconds + 120)
    print("second: every session presses Analyze again ...", flush=True)
    with PeakRss(pid) as peak:
        second = second_round(sessions, args.parallel)
    results["second"] = {**second.counts, "errors": second.messages}
    results["rss_after_second_mb"], results["rss_peak_second_mb"] = round(rss_mb(pid), 1), round(peak.peak, 1)
    for s in sessions:
        s.close()
    results["rss_growth_mb"] = round(max(results["rss_after_first_mb"], results["rss_after_second_mb"])
                                     - results["rss_warm_mb"], 1)
    results["rss_peak_growth_mb"] = round(max(results["rss_peak_first_mb"], results["rss_peak_second_mb"])
                                          - results["rss_warm_mb"], 1)
    results["app_alive"] = app.process.poll() is None
    return results


def table(r: dict, args) -> str:
    def row(name, part):
        return (f"| {name} | {sum(part[k] for k in OUTCOMES)} | {part['answered']} | {part['upload_again']} | "
                f"{part['busy']} | {part['user_error']} | {part['server_error']} | {part['failed']} |")
    lines = ["| Part | Requests | Answered | Asked to upload again | Busy (retry) | User error | Server error "
             "| Failed |", "|---|---|---|---|---|---|---|---|",
             row(f"first Analyze ({args.sessions} sessions, {r['photo_mb']} MB photos)", r["first"]),
             row("second Analyze, uploads cleaned away", r["second"]), "",
             f"Cap {args.session_mb} MB. App RSS: {r['rss_warm_mb']} MB warm, {r['rss_after_first_mb']} MB after the "
             f"first Analyzes, {r['rss_after_second_mb']} MB after the second: growth {r['rss_growth_mb']:+} MB "
             f"(limit: the cap + 150 MB), peak growth {r['rss_peak_growth_mb']:+} MB while requests were worked on. "
             f"Uploads cleaned away {r['cleanup_s']} s after the last answer; "
             f"app alive: {'yes' if r['app_alive'] else 'NO'}."]
    for part in ("first", "second"):
        lines += [f"- {part}, first {kind}: {message}" for kind, message in r[part]["errors"].items()]
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=200, help="browser sessions, each with its own photo")
    p.add_argument("--photo-mb", type=float, default=8.0, help="the size of each photo (a JPEG)")
    p.add_argument("--parallel", type=int, default=8, help="sessions at a time")
    p.add_argument("--session-mb", type=int, default=256, help="the app's SKINLESION_SESSION_MB")
    p.add_argument("--upload-seconds", type=int, default=30, help="the app's SKINLESION_UPLOAD_SECONDS")
    p.add_argument("--start-timeout", type=float, default=300, help="seconds to wait for the app to answer")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sessions.json", help="JSON results")
    return p


def main(args: argparse.Namespace) -> dict:
    env = {"SKINLESION_SESSION_MB": str(args.session_mb), "SKINLESION_UPLOAD_SECONDS": str(args.upload_seconds)}
    with tempfile.TemporaryDirectory(prefix="sessions_") as tmp:
        temp_dir, log_path = Path(tmp) / "gradio", Path(tmp) / "app.log"
        try:
            with running_app([sys.executable, str(ROOT / "app.py")], temp_dir, log_path, env,
                             args.start_timeout) as app:
                results = run_parts(app, args, temp_dir)
        except AppDidNotStart as e:
            sys.exit(str(e))
        if not results["app_alive"] or results["first"]["failed"] or results["first"]["server_error"]:
            print(f"--- the end of the app's output ---\n{tail(log_path, 40)}\n---")
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(table(results, args))
    write_json(results, args.out)
    print(f"\nwritten {args.out}")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
