"""`tsfm ui`: MLflow's and Prefect's web UIs on this project's own state.

MLflow's UI reads the tracking store (``sqlite:///<state_dir>/mlflow.db`` unless a server is
configured); Prefect's reads the database under ``PREFECT_HOME`` (``<state_dir>/prefect``
unless set), where every `tsfm` command's flow runs were recorded. Prefect's UI needs to be
told its API's address when it is not on port 4200 (``PREFECT_UI_API_URL``). Where a server
is configured (``mlflow.tracking_uri``/``prefect.api_url`` over HTTP) nothing is started for it:
its address is printed.

A third process serves the one-click onboarding form (`tsfm deploy --one-click`) on that Prefect
API: only the form, so opening the UI switches no schedule or trigger on. Its flow runs execute
in this project (same settings, same state), each in a process of its own.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.prefect_db import seed
from infra.servers import die_with_parent, stop, terminate, wait_http
from infra.settings import Settings, runtime_env


@dataclass(frozen=True)
class UiCommand:
    name: str  # MLflow or Prefect
    url: str  # what to open in a browser
    health: str  # what answers 200 once it is up
    cmd: list[str] = field(default_factory=list)  # empty: a configured server, nothing to start
    env: dict[str, str] = field(default_factory=dict)  # set on top of the caller's environment
    log: str = ""  # where its output goes (the form's flow runs print there); "" = nowhere

    def shell(self) -> str:
        if not self.cmd:
            return f"# {self.name}: configured server, open {self.url}"
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(self.cmd)}".strip() + f"   # then open {self.url}"


def ui_commands(
    settings: Settings, host: str = "127.0.0.1", mlflow_port: int = 5000, prefect_port: int = 4200
) -> list[UiCommand]:
    bin_dir = Path(sys.executable).parent
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        mlflow = UiCommand("MLflow UI", uri, f"{uri.rstrip('/')}/health")
    else:
        url = f"http://{host}:{mlflow_port}"
        mlflow = UiCommand(
            "MLflow UI",
            url,
            f"{url}/health",
            [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(mlflow_port)],
            # no telemetry; no GenAI job runner (its 7 huey consumers cost ~30 CPU-s and serve nothing tsfm uses)
            {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    api = settings.prefect.api_url
    if api:
        prefect = UiCommand("Prefect UI", api.rstrip("/").removesuffix("/api"), f"{api.rstrip('/')}/health")
    else:
        url = f"http://{host}:{prefect_port}"
        home = runtime_env(settings)["PREFECT_HOME"]
        prefect = UiCommand(
            "Prefect UI",
            url,
            f"{url}/api/health",
            [str(bin_dir / "prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
            {"PREFECT_HOME": home, "PREFECT_UI_API_URL": f"{url}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        )
    form_url = f"{prefect.url}/deployments"
    form = UiCommand(
        "Onboarding form",
        form_url,
        f"{prefect.url}/api/deployments/name/onboard_domain/one-click-onboarding",
        [str(bin_dir / "tsfm"), "deploy", "--one-click"],
        {"PREFECT_API_URL": f"{prefect.url}/api"},
        str(Path(settings.paths.state_dir) / "one-click-onboarding.log"),
    )
    return [mlflow, prefect, form]


def run_ui(
    commands: list[UiCommand],
    say: Callable[[str], None],
    timeout: float = 120.0,
    until: Callable[[], bool] | None = None,
) -> None:
    """Start what needs starting, say where to look, wait for Ctrl-C (or ``until()``), stop them."""
    import os

    procs: list[subprocess.Popen] = []

    def _interrupt(signum, frame):  # SIGTERM (a supervisor, `kill`) stops both servers as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for c in commands:
            if c.cmd:
                env = dict(os.environ)
                env.pop("PREFECT_API_URL", None)  # a server must not point at itself as a client
                env.update(c.env)
                if c.env.get("PREFECT_HOME"):  # Prefect's UI on the project's database: start a new one migrated
                    seed(Path(c.env["PREFECT_HOME"]) / "prefect.db")
                if c.log:
                    Path(c.log).parent.mkdir(parents=True, exist_ok=True)
                out = open(c.log, "a") if c.log else subprocess.DEVNULL
                procs.append(
                    subprocess.Popen(
                        c.cmd,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=die_with_parent,
                    )
                )
                if c.log:
                    out.close()  # the child keeps its own descriptor
                wait_http(c.health, procs[-1], timeout, c.name, Path(c.log) if c.log else None)
            say(f"{c.name}: {c.url}" + (f" (log: {c.log})" if c.log else ""))
        say("Ctrl-C stops them")
        while until is None or not until():
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a UI process exited; run `tsfm ui --print` and start it by hand to see why")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:  # both told at once, so a slow one does not delay the other's shutdown
        for p in procs:
            terminate(p)
        for p in procs:
            stop(p, timeout=15.0)
