"""Big request bodies are decoded in a process of their own.

Decoding a 16 MB body (5,000 series of 120 points: 600,000 rows) builds about 2.4 million Python
objects and holds the interpreter lock for about a second, whichever JSON library does it; in the
serving process every small request beside it waited that long (p99 1.4 s against 11 ms alone).
A body above ``OFFLOAD_BYTES`` is therefore decoded and parsed by one helper process, which sends
back only flat arrays (a few memory copies here), and the serving process rebuilds the per-series
lists in a thread.

Only the common body (``dataframe_split`` rows that ``parse_rows`` reads) comes back parsed; for
any other body, or when the helper cannot answer, the caller parses it here as before. The
``ValueError`` of a malformed body is raised as if it had been parsed here.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pandas as pd

from models.forecasting.protocol import parse_json, parse_rows, request_rows

log = logging.getLogger("tsfm.serving")
OFFLOAD_BYTES = 1 << 20  # bodies above 1 MB: below it, decoding takes a few milliseconds

Flat = tuple[dict[str, Any], list[str], np.ndarray, np.ndarray, np.ndarray]
Parsed = tuple[list[str], list[np.ndarray], list[pd.Series]]


class InvalidBody(ValueError):
    """The body is not (strict) JSON: as ``parse_json``'s ValueError, which the app words differently
    from a well-formed body with wrong contents."""


def decode(raw: bytes) -> Flat | None:
    """(params, ids, values, lengths, stamps) with every series' values and stamps end to end, or
    None for a body ``parse_rows`` does not read (the caller decides). Runs in the helper."""
    try:
        body = parse_json(raw)
    except ValueError as e:
        raise InvalidBody(str(e)) from None
    rows = request_rows(body)
    if rows is None:
        return None
    params = body.get("params") or {}  # type: ignore[union-attr]  # request_rows: a dict
    if not isinstance(params, dict):
        raise InvalidBody("'params' must be a JSON object")
    parsed = parse_rows(*rows)
    if parsed is None:
        return None
    ids, values, stamps = parsed
    arrays = [s.to_numpy() for s in stamps]
    if len({a.dtype for a in arrays}) != 1:
        return None
    lengths = np.array([len(v) for v in values], dtype=np.int64)
    return params, ids, np.concatenate(values), lengths, np.concatenate(arrays)


def rebuild(flat: Flat) -> tuple[dict[str, Any], Parsed]:
    """``decode``'s arrays back into what ``parse_rows`` returns (in a thread of the serving process)."""
    params, ids, values, lengths, stamps = flat
    cuts = np.cumsum(lengths)[:-1]
    return params, (ids, np.split(values, cuts), [pd.Series(s) for s in np.split(stamps, cuts)])


def _exit_with_parent(parent: int) -> None:
    """In the helper: exit once the server is gone, even SIGKILLed (no shutdown code of its ran). Not
    the parent-death signal: Linux sends that when the *thread* that started the helper ends."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="tsfm-exit-with-server", daemon=True).start()


class Decoder:
    """One helper process, started by the first big body (spawned: no copy of the server's threads;
    about a second, small beside decoding such a body) and kept until the server stops."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._starting = threading.Lock()  # two first big bodies at once start one helper

    def start(self) -> None:
        with self._starting:
            if self._pool is not None:
                return
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=mp.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
            pool.submit(int).result()  # started and importing done before the first body is sent
            self._pool = pool

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:  # waits for a body being decoded (a second or two at most), then the helper exits
            pool.shutdown(wait=True, cancel_futures=True)

    async def parse(self, raw: bytes) -> tuple[dict[str, Any], Parsed] | None:
        """(params, parsed) of the common body, None where the caller must parse it itself. Raises
        ``InvalidBody``, or the ``ValueError``/``OverflowError`` of ``parse_rows``, as parsing here would."""
        if self._pool is None:
            await asyncio.to_thread(self.start)
        assert self._pool is not None
        try:
            flat = await asyncio.wrap_future(self._pool.submit(decode, raw))
        except BrokenProcessPool:  # the helper died (killed, out of memory): a new one, off the event loop
            log.warning("the body-decoding helper process died; starting another")
            self.stop()
            await asyncio.to_thread(self.start)
            return None
        return None if flat is None else await asyncio.to_thread(rebuild, flat)
