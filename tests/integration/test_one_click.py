"""One-click onboarding as README tells a new user: `tsfm ui` in an empty project, then the Prefect
form (Deployments -> one-click-onboarding -> Run -> Custom run) filled in headless Chromium, and a
served champion at the end. `tsfm ui` switches no schedule on: the form is its only deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from infra.servers import free_port
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, _env

DOMAIN = "shop"


def _wait_for_lines(proc: subprocess.Popen, prefixes: tuple[str, ...], timeout: float = 180) -> dict[str, str]:
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(prefixes) and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        for prefix in prefixes:
            if line.startswith(prefix):
                found[prefix] = line[len(prefix) :].strip()
    assert len(found) == len(prefixes), (found, proc.poll())
    return found


def _csv(path) -> None:
    rng = np.random.default_rng(3)
    m = np.arange(48)
    rows = [
        f"s{i},{2020 + k // 12}-{k % 12 + 1:02d}-01,{100 + 10 * i + 15 * np.sin(k * np.pi / 6) + k + e:.2f}"
        for i in range(4)
        for k, e in zip(m, rng.normal(0, 4, m.size))
    ]
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")


def _field(page, label: str):
    """The input of the form property labelled ``label`` (Prefect's schema form)."""
    prop = page.locator(
        f".schema-form-property:has(> .p-label__header .schema-form-property__label:text-is('{label}'))"
    ).first
    return prop.locator(".p-label__body").first.locator("textarea, input").first


@pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium at /usr/bin/chromium (make install)",
)
def test_the_form_takes_an_empty_project_to_a_champion(tmp_path, test_artifacts):
    from playwright import sync_api

    _csv(tmp_path / "shop.csv")
    # the onboarding the form starts, as small as the other end-to-end tests' (the form opens on these settings)
    env = _env(
        tmp_path, TSFM_ONBOARD__ADAPTER__EPOCHS="2", TSFM_ONBOARD__STRIDE="4", TSFM_ONBOARD__FINETUNE__MAX_STEPS="0"
    )
    ports = free_port(), free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "tsfm_cli.main", "ui", "--mlflow-port", str(ports[0]), "--prefect-port", str(ports[1])],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        urls = _wait_for_lines(ui, ("MLflow UI: ", "Prefect UI: ", "Onboarding form: "))
        mlflow_url, prefect_url = urls["MLflow UI: "], urls["Prefect UI: "]
        assert mlflow_url.endswith(f":{ports[0]}") and prefect_url.endswith(f":{ports[1]}")
        deployments = requests.post(f"{prefect_url}/api/deployments/filter", json={}, timeout=30).json()
        assert [(d["name"], d["schedules"]) for d in deployments] == [("one-click-onboarding", [])]

        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{prefect_url}/deployments")
                page.get_by_text("one-click-onboarding").first.click(timeout=60_000)
                page.get_by_role("button", name="Run", exact=True).click(timeout=60_000)
                page.get_by_text("Custom run").first.click()
                page.get_by_text("Domain", exact=True).wait_for(timeout=60_000)
                labels = page.locator(".schema-form-property__label").all_inner_texts()
                # what a person fills in comes first; the tuning sections after
                assert labels[:4] == ["params", "Domain", "Source (Optional)", "Horizon (Optional)"], labels[:6]
                assert labels.index("Teacher (Optional)") > labels.index("Freq (Optional)")
                text = page.inner_text("body")
                assert "lower-case letters, digits" in text and "s3://bucket/key" in text
                horizon = _field(page, "Horizon (Optional)")
                assert horizon.input_value() == "8"  # `tsfm onboard`'s default (the settings' onboard.horizon)
                _field(page, "Domain").fill(DOMAIN)
                _field(page, "Source (Optional)").fill(str(tmp_path / "shop.csv"))
                horizon.fill("6")
                page.screenshot(path=str(test_artifacts / "prefect-one-click-form.png"), full_page=True)
                page.get_by_role("button", name="Submit").click()
                page.wait_for_url("**/deployments/deployment/**", timeout=60_000)
                deadline, state = time.monotonic() + 400, None
                while time.monotonic() < deadline:
                    runs = requests.post(f"{prefect_url}/api/flow_runs/filter", json={}, timeout=30).json()
                    top = [r for r in runs if r["parameters"].get("params", {}).get("domain") == DOMAIN]
                    state = top[0]["state_type"] if top else None
                    if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                        break
                    time.sleep(3)
                assert state == "COMPLETED", (
                    state,
                    (tmp_path / "state" / "one-click-onboarding.log").read_text()[-3000:],
                )
                page.reload()
                page.get_by_text("Completed").first.wait_for(timeout=60_000)  # the run, as the page shows it
                page.screenshot(path=str(test_artifacts / "prefect-one-click-run.png"), full_page=True)
            finally:
                browser.close()

        model = requests.get(
            f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": f"forecaster-{DOMAIN}"}, timeout=30
        ).json()["registered_model"]
        assert "champion" in {a["alias"] for a in model.get("aliases", [])}
        # the same project state as the CLI's: the store, and the experiments described for a reviewer
        assert (tmp_path / "data" / "store" / DOMAIN).is_dir()
        exp = requests.get(
            f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "tsfm-ingest"},
            timeout=30,
        ).json()["experiment"]
        tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        assert "rows in, kept and quarantined" in tags["mlflow.note.content"]
    finally:
        # SIGTERM: a background job (CI, nohup) starts with SIGINT ignored, and a supervisor sends TERM
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
    for port in ports:  # every server stopped with it
        try:
            requests.get(f"http://127.0.0.1:{port}", timeout=2)
            raise AssertionError(f"port {port} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass
