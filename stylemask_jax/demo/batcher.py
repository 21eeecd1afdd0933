"""Requests that arrive together run as one batch.

    queue = BatchQueue(run_batch, max_batch=4, max_wait_s=0.05)
    result = queue.submit(item)          # blocks; called from many request threads at once

A worker thread takes the first waiting item, then collects more for up to `max_wait_s` (or
until `max_batch` are there) and calls `run_batch(items) -> results` once for all of them.
Each request keeps its own input checks (done before `submit`, in its own thread), so one bad
upload never fails its neighbours; an exception of `run_batch` itself goes to every request of
that batch. Gradio's own `batch=True` would hand the function lists too, but an error raised
there fails every request of the batch, and its page message reaches them all.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Sequence


class BatchQueue:
    def __init__(self, run_batch: Callable[[Sequence], Sequence], max_batch: int,
                 max_wait_s: float = 0.05):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, int(max_batch), max_wait_s
        self.batch_sizes: list[int] = []          # how many items each call of run_batch got
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="demo-batcher", daemon=True)
        self._worker.start()

    def submit(self, item):
        """Queues one item and waits for its result (or re-raises the batch's exception)."""
        future: Future = Future()
        self._queue.put((item, future))
        return future.result()

    def _collect(self) -> list:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0
                             else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            self.batch_sizes.append(len(batch))
            try:
                results = self.run_batch([item for item, _ in batch])
            except BaseException as err:  # delivered to the waiting requests, never lost
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
