"""Load test of the Gradio app: latency and throughput, behaviour past the queue's limit, memory over many requests.

    python benchmarks/load_test.py                       # full figures: 16 clients x 8, 128 at once, 500 in a row
    python benchmarks/load_test.py --clients 4 --per-client 2 --overload 48 --requests 20   # a quick look
    python benchmarks/load_test.py --same-file --clients 16 --per-client 8 --overload 0 --requests 0 --upload-seconds 5

It starts `python app.py` on a free port in a subprocess (with its own GRADIO_TEMP_DIR; benchmarks/app_process.py),
waits until it answers, and talks to it only through gradio_client, as any API user would. Three parts:

  throughput  N clients in parallel, each sending M example photos one after another: answered / failed,
              p50 / p95 latency, requests per second.
  overload    many more requests at once than the queue holds: how many were answered, refused with a clear
              "queue is full", or failed otherwise; the largest queue seen (/queue/status); whether the app still
              answers afterwards.
  memory      the app process's resident memory after a warm-up and after K sequential requests.

--same-file sends one photo (bytes unlike any example's) from every client: Gradio stores uploads by the hash of
their bytes, so all requests share one file. The script counts the uploads left in the app's upload folder after
each part, and at the end waits for Gradio's cache cleaner to delete them (the app keeps an upload
SKINLESION_UPLOAD_SECONDS, --upload-seconds here). Prints a markdown table and writes everything to JSON (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, TooManyRequestsError

# `python benchmarks/load_test.py` puts benchmarks/ on the path, not the repository root that holds the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.app_process import AppDidNotStart, RunningApp, running_app, tail
from benchmarks.memory import rss_mb
from benchmarks.timing import latency_summary

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.jpg"))
ARGS = (55, "male", None)  # age, sex, site: the same for every request
REQUEST_TIMEOUT_S = 600    # queue wait included; a request that takes longer counts as failed, the run goes on


# ---- the app's upload folder ----------------------------------------------------------------------------

def files_in(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.is_file()}


def wait_for_cleanup(folder: Path, kept: set[str], timeout: float) -> float | None:
    """Seconds until no file but `kept` (the examples' copies) is left in `folder`; None if some outlive `timeout`."""
    start = time.perf_counter()
    while files_in(folder) - kept:
        if time.perf_counter() - start > timeout:
            return None
        time.sleep(0.2)
    return round(time.perf_counter() - start, 1)


def distinct_copy(image: str, folder: Path) -> str:
    """The photo re-encoded as PNG: bytes unlike any example's, so its upload is not one of the examples' copies."""
    from PIL import Image
    out = folder / (Path(image).stem + "_upload.png")
    Image.open(image).save(out)
    return str(out)


# ---- requests -------------------------------------------------------------------------------------------

def client(url: str, workers: int = 4) -> Client:
    return Client(url, verbose=False, download_files=False, max_workers=workers)


def kind_of(error: BaseException) -> str:
    """busy: the clear "queue is full, try again"; user_error: a message the app wrote for the user (gr.Error);
    server_error: an exception the app did not handle (the client only sees Gradio's generic text); failed: the rest
    (connection, timeout, protocol)."""
    if isinstance(error, (QueueError, TooManyRequestsError)) or "queue is full" in str(error).lower():
        return "busy"
    if isinstance(error, AppError):
        return "server_error" if "has raised an exception" in str(error) else "user_error"
    return "failed"


class Tally:
    """Outcomes and latencies from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.counts = {"answered": 0, "busy": 0, "user_error": 0, "server_error": 0, "failed": 0}
        self.messages: dict[str, str] = {}  # the first message of each kind of error

    def record(self, seconds: float, error: BaseException | None = None) -> None:
        with self.lock:
            if error is None:
                self.counts["answered"] += 1
                self.latencies.append(seconds)
                return
            kind = kind_of(error)
            self.counts[kind] += 1
            self.messages.setdefault(kind, f"{type(error).__name__}: {str(error)[:200]}")


def timed(tally: Tally, fn, *args) -> None:
    """Call fn(*args) and record its time and outcome in `tally`."""
    start = time.perf_counter()
    try:
        fn(*args)
    except Exception as e:  # every outcome is counted, none stops the run
        tally.record(time.perf_counter() - start, e)
    else:
        tally.record(time.perf_counter() - start)


def predict(c: Client, image: str):
    return c.submit(handle_file(image), *ARGS, api_name="/predict").result(timeout=REQUEST_TIMEOUT_S)


# ---- the three parts ------------------------------------------------------------------------------------

def throughput(url: str, clients: int, per_client: int, images: list[str] = EXAMPLES) -> dict:
    """`clients` threads, each its own Client, each sending `per_client` requests one after another."""
    with ThreadPoolExecutor(clients) as pool:
        conns = list(pool.map(lambda _: client(url), range(clients)))  # connecting is not part of the timing
    tally = Tally()

    def run(i: int):
        for j in range(per_client):
            timed(tally, predict, conns[i], images[(i + j) % len(images)])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    wall = time.perf_counter() - start
    for c in conns:
        c.close()
    return {"clients": clients, "per_client": per_client, "same_file": len(set(images)) == 1,
            "requests": clients * per_client, **tally.counts,
            **latency_summary(tally.latencies), "wall_s": round(wall, 2),
            "requests_per_s": round(tally.counts["answered"] / wall, 2), "errors": tally.messages}


def overload(url: str, n: int, connections: int = 4) -> dict:
    """`n` requests submitted at once over a few connections; /queue/status is sampled while they run."""
    conns = [client(url, workers=n) for _ in range(connections)]
    tally, sizes, done = Tally(), [], threading.Event()

    def watch_queue():
        with httpx.Client(base_url=url, timeout=5) as http:
            while not done.is_set():
                try:
                    sizes.append(http.get("/gradio_api/queue/status").json()["queue_size"])
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                done.wait(0.1)

    watcher = threading.Thread(target=watch_queue, daemon=True)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:  # every request is in flight at once
        list(pool.map(lambda i: timed(tally, predict, conns[i % connections], EXAMPLES[i % len(EXAMPLES)]), range(n)))
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    for c in conns:
        c.close()
    after = Tally()  # does the app still answer?
    with closing(client(url)) as c:
        timed(after, predict, c, EXAMPLES[0])
    return {"requests": n, **tally.counts, **latency_summary(tally.latencies), "wall_s": round(wall, 2),
            "max_queue_size": max(sizes, default=None), "answers_afterwards": after.counts["answered"] == 1,
            "errors": tally.messages}


def memory(url: str, pid: int, requests: int, warmup: int = 5) -> dict:
    """Resident memory of the app after `warmup` requests, then every tenth of `requests` sequential ones."""
    tally = Tally()
    with closing(client(url)) as c:
        for i in range(warmup):
            timed(Tally(), predict, c, EXAMPLES[i % len(EXAMPLES)])
        before = rss_mb(pid)
        samples = [round(before, 1)]
        for i in range(requests):
            timed(tally, predict, c, EXAMPLES[i % len(EXAMPLES)])
            if (i + 1) % max(1, requests // 10) == 0:
                samples.append(round(rss_mb(pid), 1))
    after = rss_mb(pid)
    return {"requests": requests, "warmup": warmup, **tally.counts, **latency_summary(tally.latencies),
            "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "rss_growth_mb": round(after - before, 1), "rss_samples_mb": samples, "errors": tally.messages}


# ---- report ---------------------------------------------------------------------------------------------

HEADER = ["| Part | Requests | Answered | Busy (queue full) | User error | Server error | Failed "
          "| p50 s | p95 s | Other |",
          "|---|---|---|---|---|---|---|---|---|---|"]


def table_row(name: str, r: dict, other: str) -> str:
    return (f"| {name} | {r['requests']} | {r['answered']} | {r['busy']} | {r['user_error']} | {r['server_error']} "
            f"| {r['failed']} | {r['p50_s']} | {r['p95_s']} | {other} |")


def cleanup_note(results: dict) -> str:
    if "cleanup_s" not in results:
        return "."
    if results["cleanup_s"] is None:
        return "; some uploads outlived the wait."
    return f"; all uploads deleted {results['cleanup_s']} s after the last answer."


def table(results: dict) -> str:
    rows = list(HEADER)
    if "throughput" in results:
        r = results["throughput"]
        one_file = ", one file" if r["same_file"] else ""
        rows.append(table_row(f"throughput ({r['clients']} clients x {r['per_client']}{one_file})", r,
                              f"{r['requests_per_s']} req/s over {r['wall_s']} s"))
    if "overload" in results:
        r = results["overload"]
        rows.append(table_row("overload (all at once)", r, f"largest queue {r['max_queue_size']}; "
                              f"answers afterwards: {'yes' if r['answers_afterwards'] else 'NO'}"))
    if "memory" in results:
        r = results["memory"]
        rows.append(table_row("memory (sequential)", r,
                              f"RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB ({r['rss_growth_mb']:+} MB)"))
    lines = ["\n".join(rows), "",
             f"App: started in {results['startup_s']} s, RSS {results['rss_idle_mb']} MB idle; files left in its "
             f"upload folder: {results['upload_files']}" + cleanup_note(results)]
    for part in ("throughput", "overload", "memory"):
        for kind, message in results.get(part, {}).get("errors", {}).items():
            lines.append(f"- {part}, first {kind}: {message}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16, help="parallel clients in the throughput part")
    p.add_argument("--per-client", type=int, default=8, help="requests each client sends, one after another")
    p.add_argument("--overload", type=int, default=128, help="requests sent at once in the overload part (0: skip)")
    p.add_argument("--requests", type=int, default=500, help="sequential requests in the memory part (0: skip)")
    p.add_argument("--same-file", action="store_true", help="every client sends the same photo in the throughput part")
    p.add_argument("--upload-seconds", type=int, help="the app's SKINLESION_UPLOAD_SECONDS (default: the app's own); "
                                                      "the script waits for the uploads to be cleaned away")
    p.add_argument("--start-timeout", type=float, default=300, help="seconds to wait for the app to answer")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.json", help="JSON results")
    p.add_argument("--app", type=Path, default=ROOT / "app.py", help="the app script to start (to compare a variant)")
    p.add_argument("--app-log", type=Path, help="keep the app's output here (default: a temporary file, whose end "
                                                  "is printed when a request failed)")
    return p


def run_parts(app: RunningApp, args: argparse.Namespace, images: list[str], temp_dir: Path) -> dict:
    """The parts asked for on the running app, counting the uploads left in its folder after each."""
    results = {"startup_s": round(app.up_s, 1), "rss_idle_mb": round(rss_mb(app.process.pid), 1)}
    kept = files_in(temp_dir)  # the examples' copies, made at start-up; they stay
    upload_files = {"start": 0}
    if args.clients and args.per_client:
        print(f"throughput: {args.clients} clients x {args.per_client} requests ...", flush=True)
        results["throughput"] = throughput(app.url, args.clients, args.per_client, images)
        upload_files["after_throughput"] = len(files_in(temp_dir) - kept)
    if args.overload:
        print(f"overload: {args.overload} requests at once ...", flush=True)
        results["overload"] = overload(app.url, args.overload)
        upload_files["after_overload"] = len(files_in(temp_dir) - kept)
    if args.requests:
        print(f"memory: {args.requests} sequential requests ...", flush=True)
        results["memory"] = memory(app.url, app.process.pid, args.requests)
        upload_files["after_memory"] = len(files_in(temp_dir) - kept)
    if args.upload_seconds is not None:
        print(f"waiting for the uploads to be cleaned away (kept {args.upload_seconds} s) ...", flush=True)
        results["cleanup_s"] = wait_for_cleanup(temp_dir, kept, timeout=2 * args.upload_seconds + 60)
        upload_files["after_cleanup"] = len(files_in(temp_dir) - kept)
    results["upload_files"] = upload_files
    results["app_alive"] = app.process.poll() is None
    return results


def write_json(results: dict, path: Path) -> None:
    """Written whole or not at all: a temporary file, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def main(args: argparse.Namespace) -> dict:
    env = {} if args.upload_seconds is None else {"SKINLESION_UPLOAD_SECONDS": str(args.upload_seconds)}
    with tempfile.TemporaryDirectory(prefix="load_test_") as tmp:
        temp_dir, log_path = Path(tmp) / "gradio", args.app_log or Path(tmp) / "app.log"
        images = [distinct_copy(EXAMPLES[0], Path(tmp))] if args.same_file else EXAMPLES
        try:
            with running_app([sys.executable, str(args.app)], temp_dir, log_path, env, args.start_timeout) as app:
                results = run_parts(app, args, images, temp_dir)
        except AppDidNotStart as e:
            sys.exit(str(e))
        parts = [results[k] for k in ("throughput", "overload", "memory") if k in results]
        if not results["app_alive"] or any(r["failed"] or r["server_error"] for r in parts):
            print(f"--- the end of the app's output ({log_path}) ---\n{tail(log_path, 40)}\n---")
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(table(results))
    write_json(results, args.out)
    print(f"\nwritten {args.out}")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
