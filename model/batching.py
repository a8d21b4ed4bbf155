"""Run the network on the requests that arrive together as one batch (for a server with concurrent users).

    clf.runner = BatchingRunner(clf.runner, max_batch=8)

Each caller still decodes, checks and validates its own photo in its own thread, so a bad upload fails alone
with its own message; only the network call is shared. One worker thread runs the wrapped runner: it takes
the first waiting request and whatever else is waiting at that moment (up to max_batch). It never waits for
a batch to fill, so a lone request goes straight through, and batches form by themselves while the network is
busy with the previous one, that is, exactly when there is load.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import torch


class BatchingRunner:
    def __init__(self, runner, max_batch: int = 8):
        self.runner, self.max_batch = runner, max_batch
        self.name = f"{runner.name}, batched"
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.batch_sizes: list[int] = []  # for measurements: the size of every batch run so far (bounded)
        threading.Thread(target=self._work, name="batching-runner", daemon=True).start()

    def __call__(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        future: Future = Future()
        self._queue.put((image, meta, future))
        return future.result()

    def _work(self):
        while True:
            jobs = [self._queue.get()]
            while sum(len(j[0]) for j in jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.batch_sizes = (self.batch_sizes + [len(jobs)])[-1000:]
            try:
                with torch.inference_mode():
                    outputs = self.runner(torch.cat([j[0] for j in jobs]), torch.cat([j[1] for j in jobs]))
            except BaseException as e:  # every caller of this batch gets the error; the worker carries on
                for *_, future in jobs:
                    future.set_exception(e)
                continue
            start = 0
            for image, _, future in jobs:
                n = len(image)
                future.set_result(tuple(o[start:start + n] for o in outputs))
                start += n
