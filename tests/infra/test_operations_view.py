"""The operations view of infra/: Prometheus's scrape config and alert rules (infra/prometheus) and
the Grafana dashboard with its provisioning (infra/grafana).

The rules go through promtool for real (`check config`, `check rules`, and the unit tests of
alerts_test.yml, where every alert fires on a failing domain and stays silent on a healthy one).
promtool is Debian's prometheus package, installed by `make install`; without it these tests fail,
they never skip. Every metric the rules and the dashboard's queries name must be one the server
really exports: the names are compared with the exposition of a ServingMetrics that holds a
sample of everything (serving traffic, inputs, the registry's and the monitor's facts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import ServingMetrics

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tsfm.json"
ALERTS = yaml.safe_load((PROM / "alerts.yml").read_text())
ALERT_TESTS = yaml.safe_load((PROM / "alerts_test.yml").read_text())
CONFIG = yaml.safe_load((PROM / "prometheus.yml").read_text())
# compose's ${VAR:-default} with every variable unset
COMPOSE = yaml.safe_load(re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", (ROOT / "infra" / "compose.yaml").read_text()))
RULES = [r for g in ALERTS["groups"] for r in g["rules"]]
# Prometheus's own series (the scrape's health), not the server's
PROMETHEUS_OWN = {"up"}


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if not found:
        pytest.fail(
            "promtool is missing: run `make install` (it installs Debian's 'prometheus' package, which "
            "provides /usr/bin/promtool), or `apt-get install prometheus`"
        )
    return found


def run_promtool(*args: str, cwd: Path = ROOT) -> str:
    out = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"promtool {' '.join(args)} failed:\n{text}"
    return text


# --- promtool ---------------------------------------------------------------------------------
def test_alert_rules_pass_promtool_check_and_unit_tests():
    assert "SUCCESS" in run_promtool("check", "rules", str(PROM / "alerts.yml"))
    assert "SUCCESS" in run_promtool("test", "rules", str(PROM / "alerts_test.yml"))


def test_prometheus_config_passes_promtool_and_scrapes_the_compose_server(tmp_path):
    # the full check opens the rule files and the token file: a copy with a token of its own
    token = tmp_path / "token"
    token.write_text("test-token\n")
    text = (PROM / "prometheus.yml").read_text()
    assert "/run/secrets/tsfm-serve-token" in text
    (tmp_path / "prometheus.yml").write_text(text.replace("/run/secrets/tsfm-serve-token", str(token)))
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    out = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert "SUCCESS" in out, out

    assert CONFIG["global"]["evaluation_interval"] == "30s"
    assert CONFIG["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in CONFIG["scrape_configs"] if j["job_name"] == "tsfm-serve"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/tsfm-serve-token"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    serve = COMPOSE["services"]["tsfm-serve"]
    assert targets == [f"tsfm-serve:{serve['environment']['TSFM_SERVE__PORT']}"]
    # the alert on the scrape names this job
    assert any('job="tsfm-serve"' in str(r["expr"]) for r in RULES)

    # compose: the config folder, the token secret and the Grafana provisioning are mounted
    services = COMPOSE["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "tsfm-serve-token" in services["prometheus"]["secrets"]
    assert COMPOSE["secrets"]["tsfm-serve-token"]["environment"] == "TSFM_SERVE_TOKEN"
    grafana_mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"] if v.startswith("./")
    )
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tsfm.yml").read_text())["providers"][0]
    assert grafana_mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    for name in ("prometheus", "grafana"):
        assert re.search(r":v?\d+\.\d+\.\d+$", services[name]["image"]), f"{name}: pin the image's version"


def test_every_alert_is_unit_tested_firing_and_silent():
    names = [r["alert"] for r in RULES]
    assert len(names) == len(set(names))
    assert {
        "TsfmServeErrorRate",
        "TsfmServeLatencyHigh",
        "TsfmChampionStale",
        "TsfmDomainDrift",
        "TsfmDomainDegraded",
        "TsfmServeDown",
    } <= set(names)
    for r in RULES:
        assert r.get("for"), f"{r['alert']} has no `for`"
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        key = "instance" if r["alert"] == "TsfmServeDown" else "domain"
        assert f"$labels.{key}" in r["annotations"]["summary"], f"{r['alert']}'s summary names no {key}"

    fired, silent = set(), set()
    for group in ALERT_TESTS["tests"]:
        series = [s["series"] for s in group["input_series"]]
        for case in group["alert_rule_test"]:
            name = case["alertname"]
            assert name in names, f"alerts_test.yml tests an unknown alert {name}"
            expected = case.get("exp_alerts") or []
            if not expected:
                silent.add(name)
                continue
            fired.add(name)
            # the same input holds a healthy domain (replica) the alert leaves alone
            key = "instance" if name == "TsfmServeDown" else "domain"
            seen = {m for s in series for m in re.findall(rf'\b{key}="([^"]+)"', s)}
            firing = {str(a["exp_labels"][key]) for a in expected}
            assert firing < seen, f"{name}: no healthy {key} in the input that fires it ({sorted(seen)})"
    assert set(names) == fired, f"never fired in alerts_test.yml: {sorted(set(names) - fired)}"
    assert set(names) == silent, f"no case where they stay silent: {sorted(set(names) - silent)}"


# --- metric names ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported() -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(sample names, family names, labels per sample name) of a ServingMetrics holding every metric."""
    m = ServingMetrics(max_champion_age_s=86400 * 30)
    m.observe_inputs("d", [np.array([1.0, 2.0, np.nan, 4.0] * 10)], horizon=8, season=4)
    m.requests.labels("d", "200").inc()
    m.latency.labels("d").observe(0.01)
    m.batch_requests.labels("d").observe(1)
    m.batch_series.labels("d").observe(1)
    m.forward_seconds.labels("d").observe(0.01)
    m.reloads.labels("d", "ok").inc()
    m.set_models(
        {
            "d": types.SimpleNamespace(
                name="forecaster-d", version="1", family="patchtst", alias="champion", backbone_version="1"
            )
        },
        1,
    )
    m.set_domain_tags(
        {
            "d": {
                "validated_at": "1700000000",
                "monitor.checked_at": "1700000000",
                "monitor.degraded": "1",
                "monitor.ratio.MASE": "1.7",
                "monitor.vs_naive.sCRPS": "0.8",
                "monitor.ratio.sCRPS": "1.5",
                "monitor.ratio.sMAPE": "1.2",
                "monitor.coverage": "0.6",
                "monitor.psi_threshold": "0.25",
                "monitor.psi.store.level": "0.4",
                "monitor.psi.serving.level": "0.1",
            }
        }
    )
    body, _ = m.render()
    samples, families, labels = set(), set(), {}
    for family in text_string_to_metric_families(body.decode()):
        if not family.name.endswith("_created"):  # the parser lists a counter's creation time apart
            families.add(family.name)
        for s in family.samples:
            samples.add(s.name)
            labels.setdefault(s.name, set()).update(s.labels)
    return samples, families, labels


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out += [p, *p.get("panels", [])]  # a collapsed row holds its panels
    return [p for p in out if p["type"] != "row"]


def _dashboard_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        q = var.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\btsfm_[a-z0-9_]+", expr))
    names |= {n for n in PROMETHEUS_OWN if re.search(rf"(?<![\w.$\"']){n}\s*(\{{|\)|$|[=!<>])", expr)}
    return names


def test_rules_and_dashboard_name_only_exported_metrics(exported):
    samples, families, _ = exported
    known = samples | PROMETHEUS_OWN
    rule_exprs = [str(r["expr"]) for r in RULES]
    dash = _dashboard()
    used = {name for e in rule_exprs + _dashboard_exprs(dash) for name in _metric_names(e)}
    assert {"up", "tsfm_serve_requests_total", "tsfm_monitor_drift_psi"} <= used
    unknown = sorted(used - known)
    assert not unknown, f"queries name metrics the server does not export: {unknown}"

    # what the texts tell an operator to look at (annotations, panel descriptions) exists too
    texts = (
        [v for r in RULES for v in r["annotations"].values()]
        + [p.get("description", "") for p in _panels(dash)]
        + [dash.get("description", "")]
    )
    mentioned = {n for t in texts for n in re.findall(r"\btsfm_[a-z0-9_]+", t)}
    unknown = sorted(mentioned - samples - families)
    assert not unknown, f"annotations or descriptions name metrics the server does not export: {unknown}"


def test_dashboard_shows_every_exported_metric_per_selected_domain(exported):
    samples, families, labels = exported
    dash = _dashboard()
    assert dash["schemaVersion"] >= 39 and dash["uid"] and dash["title"]
    (var,) = [v for v in dash["templating"]["list"] if v["name"] == "domain"]
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    assert query == "label_values(tsfm_serve_model_info, domain)"
    assert var["multi"] and var["includeAll"]

    panels = _panels(dash)
    assert len(panels) >= 12
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert "prometheus" in COMPOSE["services"]
    for p in panels:
        assert p["title"] and p.get("targets"), f"panel {p.get('title')!r} has no queries"
        for t in p["targets"]:
            assert t["expr"].strip(), f"panel {p['title']!r} has an empty query"
            assert t.get("datasource", p.get("datasource"))["uid"] == ds["uid"], p["title"]

    # a metric with a domain label is always narrowed to the selected domains
    for e in _dashboard_exprs(dash):
        if e.startswith("label_values("):
            continue
        for name, selector in re.findall(r"\b(tsfm_[a-z0-9_]+)(\{[^}]*\})?", e):
            if "domain" in labels.get(name, ()):
                assert 'domain=~"$domain"' in selector, f"{name} without the $domain filter in: {e}"

    # every family the server exports has a panel (new metrics come with a panel)
    shown = {n for e in _dashboard_exprs(dash) for n in _metric_names(e)}
    missing = sorted(f for f in families if not {s for s in shown if s == f or s.startswith(f + "_")})
    assert not missing, f"exported but on no panel of {DASHBOARD.name}: {missing}"
    titles = " | ".join(p["title"] for p in panels).lower()
    for words in (
        "request",
        "5xx",
        "latency",
        "batch",
        "served models",
        "champion age",
        "ratio",
        "coverage",
        "drift",
        "degraded",
        "level",
        "context length",
    ):
        assert words in titles, f"no panel about {words!r}: {titles}"
