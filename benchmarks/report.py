"""benchmark.py's results against the targets, and as the markdown of benchmarks/results/benchmark.md."""
from __future__ import annotations

TARGETS = {"latency_ratio": 0.7, "images_per_s": 40.0, "cold_start_s": 10.0, "peak_rss_mb": 1200.0,
           "app_p50_ms": 120.0, "cli_ratio": 0.8}


def at_most(what: str, value: float, target: str) -> dict:
    limit = TARGETS[target]
    return {"what": what, "value": value, "target": f"<= {limit:g}", "ok": value <= limit}


def at_least(what: str, value: float, target: str) -> dict:
    limit = TARGETS[target]
    return {"what": what, "value": value, "target": f">= {limit:g}", "ok": value >= limit}


def checks(results: dict) -> list[dict]:
    """One row per target that this run measured: what, value, target, ok."""
    lat, thr, cold, app, cli = (results.get(k) or {} for k in ("latency", "throughput", "cold_start", "app", "cli"))
    rows = [at_most(f"clf.predict p50 / timm 224 eager p50 ({r['photo']})", r["ratio_predict_to_baseline"],
                    "latency_ratio") for r in lat.values()]
    if "predict_batch" in thr:
        rows.append(at_least(f"clf.predict_batch, batch {thr['batch']} (images/s)",
                             thr["predict_batch"]["images_per_s"], "images_per_s"))
    if cli:
        rows.append(at_least(f"predict CLI / clf.predict_batch, {cli['images']} photos (images/s ratio)",
                             cli["ratio"], "cli_ratio"))
    if "fast" in cold:
        rows.append(at_most("cold start to first answer (s)", cold["fast"]["to_first_answer_s"], "cold_start_s"))
        rows.append(at_most("peak RSS, load + predict + batch (MB)", cold["fast"]["peak_rss_mb"], "peak_rss_mb"))
    if "app_web" in app:
        rows.append(at_most("app end to end p50, web page protocol (ms)", app["app_web"]["p50_ms"], "app_p50_ms"))
        floor = app["noop_gradio_client"]["p50_ms"]
        rows.append(at_most(f"app end to end p50, gradio_client (ms; a do-nothing app: {floor})",
                            app["app_gradio_client"]["p50_ms"], "app_p50_ms"))
    if "peak_rss_mb" in app:
        rows.append(at_most("peak RSS of app.py (MB)", app["peak_rss_mb"], "peak_rss_mb"))
    return rows


# ---- markdown, one section per part ----------------------------------------------------------------------

def machine_section(results: dict) -> list[str]:
    m = results["machine"]
    lines = ["# Benchmark", "", f"Run {results['finished']}, `{results['command']}`.", "",
             "| machine | |", "| --- | --- |",
             f"| CPU | {m['cpu']} |", f"| cores (logical) | {m['cores']} |",
             f"| torch threads | {m['torch_threads']} |",
             f"| memory | {m['memory_gb']} GB |", f"| GPU | {m['gpu'] or 'none'} |",
             f"| torch / torchvision / timm | {m['torch']} / {m['torchvision']} / {m['timm']} |",
             f"| onnxruntime / gradio / python | {m['onnxruntime']} / {m['gradio']} / {m['python']} |",
             f"| load average at start / end | {m['load_average_at_start']} / {m['load_average_at_end']} |",
             f"| weights | {results['weights']} |", f"| model input size | {results['input_size']} px |", ""]
    if max(m["load_average_at_start"][0], m["load_average_at_end"][0]) > 0.5 * m["cores"]:
        lines += ["**The machine was busy during this run: absolute times are inflated; "
                  "the side-by-side ratios hold better.**", ""]
    return lines


def targets_section(results: dict) -> list[str]:
    rows = checks(results)
    if not rows:
        return []
    return ["## Targets", "", "| what | value | target | |", "| --- | ---: | --- | --- |",
            *[f"| {r['what']} | {r['value']} | {r['target']} | {'pass' if r['ok'] else 'FAIL'} |" for r in rows], ""]


def latency_section(results: dict) -> list[str]:
    lines = []
    for lat in (results.get("latency") or {}).values():
        lines += [f"## Single image, {lat['photo']} (ms)", "", "| path | p50 | p95 |", "| --- | ---: | ---: |"]
        names = {"predict": f"clf.predict ({lat['runner']})", "predict_eager": "clf.predict (eager module)",
                 "timm_224_baseline": "timm eager at 224 + torchvision resize/normalize",
                 "explain": "clf.explain (Grad-CAM)"}
        lines += [f"| {label} | {lat[k]['p50_ms']} | {lat[k]['p95_ms']} |" for k, label in names.items()]
        lines += ["", (f"clf.predict / baseline: {lat['ratio_predict_to_baseline']}; "
                       f"clf.predict / clf.predict on eager: {lat['ratio_predict_to_predict_eager']}"), ""]
    return lines


def throughput_section(results: dict) -> list[str]:
    thr = results.get("throughput")
    if not thr:
        return []
    return [f"## Batch of {thr['batch']} photos", "", "| path | images/s | p50 ms |", "| --- | ---: | ---: |",
            *[f"| clf.{k} | {thr[k]['images_per_s']} | {thr[k]['p50_ms']} |"
              for k in ("predict_batch", "predict_batch_eager")], ""]


def cli_section(results: dict) -> list[str]:
    cli = results.get("cli")
    if not cli:
        return []
    return [f"## Batch predictions CLI, {cli['images']} photos, batch {cli['batch']}", "",
            "| path | images/s |", "| --- | ---: |",
            f"| clf.predict_batch on the files | {cli['predict_batch_images_per_s']} |",
            "| `python -m model.predict` loop (list, read, check, predict, write the CSV) "
            f"| {cli['cli_images_per_s']} |",
            f"| the whole command in a fresh process ({cli['command_s']} s, start-up included) "
            f"| {cli['command_images_per_s']} |",
            "", f"CLI loop / predict_batch: {cli['ratio']} (fastest of {cli['rounds']} interleaved rounds each).", ""]


def alternatives_section(results: dict) -> list[str]:
    alt = results.get("alternatives")
    if not alt:
        return []
    b = results["batch"]
    lines = ["## Inference paths tried (model only, random input)", "",
             f"| path | set-up s | batch 1 p50 ms | / eager | batch {b} images/s | max difference |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in alt.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:80]} | | | | |")
        else:
            lines.append(f"| {name} | {r['setup_s']} | {r['batch_1']['p50_ms']} | {r['ratio_to_eager_batch_1']} | "
                         f"{r[f'images_per_s_batch_{b}']} | {r['max_difference']:.1e} |")
    return lines + ["", "max difference: largest |fast - eager| of features and logits, relative to max(1, |eager|).",
                    ""]


def cold_start_section(results: dict) -> list[str]:
    cold = results.get("cold_start")
    if not cold:
        return []
    if "error" in cold:
        return ["## Cold start (fresh process)", "", "```", cold["error"], "```", ""]
    lines = ["## Cold start (fresh process)", "",
             "| path | to first answer s | interpreter | import | load | first predict | peak RSS MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label in ("fast", "eager_fallback"):
        for r in cold[label]["runs"]:
            lines.append(f"| {r['runner']} | {r['to_first_answer_s']} | {r['interpreter_s']} | {r['import_s']} | "
                         f"{r['load_s']} | {r['first_predict_s']} | {r['peak_rss_mb']} |")
    return lines + ["", cold["note"] + ".", ""]


def app_section(results: dict) -> list[str]:
    a = results.get("app")
    if not a:
        return []
    lines = ["## The app end to end (photo + age, sex, site; Grad-CAM heatmap included)", ""]
    if "app_web" not in a:
        return lines + ["```", a.get("error") or a.get("skipped"), "```", ""]
    lines += [f"app.py up in {a['up_s']} s, first answer at {a['to_first_answer_s']} s, "
              f"peak RSS {a['peak_rss_mb']} MB.", "",
              "| client | app.py p50 ms | p95 ms | do-nothing Gradio app p50 ms | p95 ms |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for client, label in (("web", "the web page's protocol (HTTP upload, queue, server-sent events)"),
                          ("gradio_client", "gradio_client")):
        r, n = a[f"app_{client}"], a[f"noop_{client}"]
        lines.append(f"| {label} | {r['p50_ms']} | {r['p95_ms']} | {n['p50_ms']} | {n['p95_ms']} |")
    return lines + ["", "The do-nothing app has the same inputs and outputs and returns at once: its times are what "
                    "Gradio and the client cost by themselves.", ""]


def cuda_section(results: dict) -> list[str]:
    c = results.get("cuda")
    if not c:
        return []
    return [f"## GPU: {c['device']}", "", "| precision | p50 ms | p95 ms | images/s |", "| --- | ---: | ---: | ---: |",
            *[f"| {k} | {c[k]['latency']['p50_ms']} | {c[k]['latency']['p95_ms']} | {c[k]['images_per_s']} |"
              for k in ("float32", "autocast_float16")], ""]


SECTIONS = (machine_section, targets_section, latency_section, throughput_section, cli_section,
            alternatives_section, cold_start_section, app_section, cuda_section)


def markdown(results: dict) -> str:
    return "\n".join(line for section in SECTIONS for line in section(results))
