"""`tsfm monitor`'s serving-metrics URLs are read once before a check: one that cannot be read (nothing
listening, not a URL, an error answer) is an ``InputError`` naming it, not a "healthy" verdict. A real
HTTP server on a free loopback port; the serving token goes to the replicas only, never to Prometheus."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluation.monitoring import check_serving_sources
from infra.errors import InputError
from infra.servers import free_port
from infra.settings import MonitorParams, load_settings


@pytest.fixture
def metrics_server():
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.path == "/metrics"
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"# metrics\n" if ok else b"no")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_serving_metrics_url_that_cannot_be_read_is_a_user_error(metrics_server, tmp_path):
    url, seen = metrics_server
    settings = load_settings(serve={"token": "s3cret"})
    check_serving_sources(MonitorParams(serving_metrics=[f"{url}/metrics"]), settings)
    assert seen == [("/metrics", "Bearer s3cret")]
    cases = {
        f"http://127.0.0.1:{free_port()}/metrics": "cannot connect (nothing listening there",
        "notaurl": "not an http(s) URL",
        f"{url}/other": "it answered HTTP 404",
    }
    for bad, why in cases.items():
        message = f"cannot read --serving-metrics (monitor.serving_metrics) {bad}: {why}"
        with pytest.raises(InputError, match=re.escape(message)):
            check_serving_sources(MonitorParams(serving_metrics=[f"{url}/metrics", bad]), settings)
    with pytest.raises(
        InputError, match=f"cannot read --prometheus-url \\(monitor.prometheus_url\\) {url}: .*HTTP 404"
    ):
        check_serving_sources(MonitorParams(prometheus_url=url), settings)
    assert seen[-1] == ("/api/v1/query?query=1", None)  # the replicas' token stays with the replicas
