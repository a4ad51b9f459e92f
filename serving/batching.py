"""Dynamic micro-batching: concurrent requests for the same model share one forward pass.

All torch work runs in one worker thread (never on the event loop): it takes the oldest
waiting request, gathers more requests for the same model object until the batch holds
``max_series`` series or the oldest request has waited ``max_wait_s`` (it waits only while
more requests are on their way: ``incoming`` counts requests the app has accepted but not
yet queued, so a lone request is not held back for nothing), runs
the served forecaster's ``predict`` once at the batch's longest horizon and hands each request
its own rows (a shorter horizon is a prefix of the longer forecast: quantiles are fused
and sorted per step). While a pass runs, new requests queue up, so batches grow with load.
Batches are keyed by the model object, not the domain name: a request keeps the version
it started with even when a reload swaps the domain's model in between.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from models.forecasting.kinds import NEURAL
from serving.catalog import ServedModel
from serving.metrics import ServingMetrics

log = logging.getLogger("tsfm.serving")
_STOP = object()


@dataclass
class _Item:
    model: ServedModel
    ids: list[str]
    contexts: list[np.ndarray]
    horizon: int
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """``max_series`` also slices a request: a bigger one runs slice by slice, each slice queued
    after the previous one finished, behind whatever arrived meanwhile (a 26,000-series request
    held small ones for 22.7 s)."""

    def __init__(self, max_series: int = 256, max_wait_ms: float = 5.0, metrics: ServingMetrics | None = None):
        self.max_series, self.max_wait_s = max_series, max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        # requests accepted but not queued yet (parsing); only the event loop changes it
        self.incoming = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tsfm-torch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=60)
            self._thread = None

    async def predict(
        self, model: ServedModel, ids: list[str], contexts: list[np.ndarray], horizon: int, announced: bool = False
    ) -> np.ndarray:
        """[N, horizon, Q] for this request's series, computed in shared forward passes.
        ``announced``: the caller counted this request in ``incoming``; it leaves it once queued."""
        size = self.slice_size(model)
        parts = []
        for start in range(0, max(len(contexts), 1), size):
            item = _Item(model, ids[start : start + size], contexts[start : start + size], horizon)
            self._queue.put(item)
            if announced and start == 0:
                self.incoming -= 1
            parts.append(await asyncio.wrap_future(item.future))  # a cancelled request is skipped by the worker
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def slice_size(self, model: ServedModel) -> int:
        """Series per slice of a big request: a quarter of a full forward pass for neural families (a
        small request waits for at most one slice), 8 for statistical ones (they refit, or re-run,
        each series: tens of milliseconds a series)."""
        return max(1, self.max_series // 4) if model.family in NEURAL else min(self.max_series, 8)

    # ---------------------------------------------------------------- worker thread
    def _loop(self) -> None:
        held: deque[_Item] = deque()  # taken from the queue for another model: they go next
        while True:
            first = held.popleft() if held else self._queue.get()
            if first is _STOP:
                break
            batch, n = [first], len(first.contexts)
            later: deque[_Item] = deque()
            for item in held:
                if item.model is first.model and n + len(item.contexts) <= self.max_series:
                    batch.append(item)
                    n += len(item.contexts)
                else:
                    later.append(item)
            held = later
            stop = False
            deadline = first.arrived + self.max_wait_s
            while n < self.max_series:
                if self.incoming <= 0 and self._queue.empty():
                    break  # nobody else is on the way: waiting would only add latency
                wait = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if item.model is first.model and n + len(item.contexts) <= self.max_series:
                    batch.append(item)
                    n += len(item.contexts)
                else:
                    held.append(item)
                    if item.model is first.model:
                        break  # full: the overflowing request starts the next batch
            self._run(batch)
            if stop:
                for item in held:
                    item.future.cancel()
                break

    def _run(self, batch: list[_Item]) -> None:
        batch = [b for b in batch if b.future.set_running_or_notify_cancel()]
        if not batch:
            return
        model = batch[0].model
        contexts = [c for b in batch for c in b.contexts]
        ids = [i for b in batch for i in b.ids]
        horizon = max(b.horizon for b in batch)
        started = time.perf_counter()
        try:
            q = model.forecaster.predict(contexts, horizon, ids=ids).quantiles  # [N, H, Q]
        except Exception as e:  # every request of the pass gets the error
            log.exception("forward pass of %s failed", model.label)
            for b in batch:
                b.future.set_exception(e)
            return
        if self.metrics is not None:
            self.metrics.forward_seconds.labels(model.domain).observe(time.perf_counter() - started)
            self.metrics.batch_requests.labels(model.domain).observe(len(batch))
            self.metrics.batch_series.labels(model.domain).observe(len(contexts))
        start = 0
        for b in batch:
            end = start + len(b.contexts)
            b.future.set_result(q[start:end, : b.horizon])
            start = end
