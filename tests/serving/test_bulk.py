"""Big request bodies are decoded in a helper process (serving/bulk.py): what comes back is what
parsing in the server gives, and a bad body fails as it would there."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest

from models.forecasting.protocol import parse_json, parse_rows, request_rows
from serving.bulk import Decoder, InvalidBody


def _body(n: int, dated: bool) -> bytes:
    rows = [
        [f"s{i}", str(pd.Timestamp("2024-01-01") + pd.Timedelta(days=t))[:10] if dated else t, float(i * 100 + t)]
        for i in range(n)
        for t in range(3 + i % 4)  # series of different lengths
    ]
    rows.reverse()  # out of order: parse_rows sorts each series by ds
    return json.dumps(
        {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows}, "params": {"horizon": 2}}
    ).encode()


@pytest.mark.parametrize("dated", [True, False])
def test_a_body_decoded_by_the_helper_equals_one_parsed_in_the_server(dated):
    raw = _body(50, dated)
    decoder = Decoder()
    try:
        params, (ids, values, stamps) = asyncio.run(decoder.parse(raw))
        ids0, values0, stamps0 = parse_rows(*request_rows(parse_json(raw)))
    finally:
        decoder.stop()
    assert params == {"horizon": 2}
    assert ids == ids0 and len(ids) == 50
    for v, v0, s, s0 in zip(values, values0, stamps, stamps0):
        np.testing.assert_array_equal(v, v0)
        pd.testing.assert_series_equal(s, s0)


def test_a_bad_body_fails_in_the_helper_as_it_would_in_the_server():
    decoder = Decoder()
    try:
        with pytest.raises(InvalidBody, match="NaN is not JSON"):
            asyncio.run(
                decoder.parse(b'{"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, NaN]]}}')
            )
        duplicated = {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0], ["a", 1, 2.0]]}}
        with pytest.raises(ValueError, match="duplicate") as failed:
            asyncio.run(decoder.parse(json.dumps(duplicated).encode()))
        assert not isinstance(failed.value, InvalidBody)  # a well-formed body with wrong contents
        # a body parse_rows does not read (records): the server parses it itself
        assert asyncio.run(decoder.parse(b'{"dataframe_records": [{"unique_id": "a", "ds": 1, "y": 1}]}')) is None
    finally:
        decoder.stop()


def test_a_killed_server_leaves_no_helper_process(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import psutil

    script = tmp_path / "server.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from serving.bulk import Decoder\n"
        "async def serve():  # as the server: the helper started from the event loop's threads, the loop running\n"
        "    await Decoder().parse(sys.argv[1].encode())\n"
        "    print(os.getpid(), flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "if __name__ == '__main__':  # the helper is spawned: it imports this file\n"
        "    asyncio.run(serve())\n"
    )
    body = json.dumps({"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": [["a", 1, 1.0]]}})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, str(script), body], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": root}
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == str(proc.pid)
        helpers = psutil.Process(proc.pid).children(recursive=True)
        assert helpers, "no helper process was started"
        proc.send_signal(signal.SIGKILL)  # no shutdown code runs
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(helpers, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
