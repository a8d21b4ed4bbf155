"""A Gradio app with the same inputs and outputs as app.py whose handler does nothing: measured beside the real
app (benchmark.py, part `app`), its times are what Gradio and the client cost by themselves.

    python -m benchmarks.noop_app   # the port and the rest from GRADIO_* environment variables
"""
import gradio as gr

LABEL = {"label": "Benign lesion", "confidences": [{"label": "Benign lesion", "confidence": 1.0}]}


def nothing(*inputs):
    return LABEL, "nothing done", None, None


with gr.Blocks() as demo:
    inputs = [gr.Image(type="filepath"), gr.Number(), gr.Dropdown(["male"]), gr.Dropdown(["back"]), gr.State(None)]
    outputs = [gr.Label(), gr.Markdown(), gr.Image(), inputs[-1]]
    gr.Button().click(nothing, inputs, outputs, api_name="predict", preprocess=False, postprocess=False)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2, max_size=32).launch()
