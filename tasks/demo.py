"""The demo's last steps as Prefect tasks: serve the domain's champion for one real HTTP
request, then print (and publish) what was trained, what won and what was served."""

from __future__ import annotations

import pandas as pd
import requests
from prefect import task
from prefect.artifacts import create_markdown_artifact

from infra.logs import run_logger
from infra.settings import Settings
from models.splits import split_frame
from reports.summary import onboarding_summary
from serving import MODEL_HEADER
from serving.launch import request_body, start_tsfm_server, stop_server, wait_ready
from store.canonical import read_store, split_horizons


@task(name="serve-and-request")
def serve_and_request_task(
    domain: str,
    store_dir: str,
    horizon: int,
    settings: Settings,
    port: int = 0,
    alias: str = "champion",
    n_series: int = 3,
) -> dict:
    """Start tsfm's server (``python -m serving``) for ``fused-<domain>@<alias>`` on 127.0.0.1,
    forecast a few series' test windows over HTTP, stop it."""
    df, _ = read_store(store_dir)
    # every series' context ends `horizon` steps before its end: the request's steps are known values
    split = split_frame(df, split_horizons(store_dir, horizon, per_series=False))
    history = pd.concat([split.train, split.val]).sort_values(["unique_id", "ds"])
    ids = sorted(history["unique_id"].unique())[:n_series]
    context = history[history["unique_id"].isin(ids)]
    log_file = settings.run_dir("serve", f"{domain}.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # the token of the settings (if any) travels in the inherited environment
    token = settings.serve.token.get_secret_value() if settings.serve.token else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    proc, url = start_tsfm_server(settings, [domain], port=port, alias=alias, log_file=log_file, reload_interval_s=0)
    try:
        wait_ready(url, proc)
        resp = requests.post(
            f"{url}/invocations", json=request_body(context, horizon, domain), headers=headers, timeout=60
        )
        if resp.status_code != 200:
            raise RuntimeError(f"server answered {resp.status_code}: {resp.text[:500]}")
        answer = pd.DataFrame(resp.json()["predictions"])
    finally:
        stop_server(proc)
    model = resp.headers.get(MODEL_HEADER)
    run_logger().info("served %s (%s): %d rows for %d series from %s", domain, model, len(answer), len(ids), url)
    return {
        "url": url,
        "alias": alias,
        "model": model,
        "rows": len(answer),
        "series": ids,
        "head": answer.head(horizon).to_dict("records"),
    }


@task(name="report")
def print_demo_report_task(onboarded: dict, served: dict | None) -> str:
    text = onboarding_summary(onboarded, served)
    print(text)
    create_markdown_artifact(key="demo-report", markdown=f"```\n{text}\n```", description="tsfm demo")
    return text
