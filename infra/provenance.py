"""Where each effective setting comes from (`tsfm config`): the schema's default, the profile,
``params.yaml`` or a ``TSFM_*`` variable, in the order ``Settings`` layers them (a command's own
options and ``--set`` come on top, for that command only)."""

from __future__ import annotations

import os
from pathlib import Path

from infra.settings import DEFAULT_PROFILE, Settings, _read_yaml, load_settings, profile_values

ENV_PREFIX, ENV_NESTED = "TSFM_", "__"


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """{"onboard": {"teacher": {"k": 20}}} -> {"onboard.teacher.k": 20}; lists and empty dicts stay whole."""
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _given(keys: set[str], path: str) -> bool:
    """A file or variable that sets ``path`` itself or a section above it (a whole section)."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1))


def _env_keys() -> set[str]:
    return {
        k[len(ENV_PREFIX) :].lower().replace(ENV_NESTED, ".")
        for k in os.environ
        if k.startswith(ENV_PREFIX) and k not in ("TSFM_PARAMS", "TSFM_PROFILE", "TSFM_DEBUG")
    }


def effective_settings() -> list[dict]:
    """Every setting: its key, effective value and source (default, profile NAME, params.yaml, env TSFM_...)."""
    settings = load_settings()
    profile = os.environ.get("TSFM_PROFILE") or DEFAULT_PROFILE
    params_path = Path(os.environ.get("TSFM_PARAMS", "params.yaml"))
    params = (
        {k for k, v in flatten(_read_yaml(params_path)).items() if v is not None} if params_path.is_file() else set()
    )
    from_profile = set(flatten(profile_values(profile)))
    env = _env_keys()
    defaults = flatten(Settings.model_construct().model_dump(mode="json"))
    rows = []
    for key, value in flatten(settings.model_dump(mode="json")).items():
        if _given(env, key):
            source = "env TSFM_" + key.upper().replace(".", ENV_NESTED)
        elif _given(params, key):
            source = str(params_path)
        elif _given(from_profile, key):
            source = f"profile {profile}"
        else:
            source = "default"
        if "token" in key and value:
            value = "***"  # a secret is never printed
        rows.append({"key": key, "value": value, "source": source, "default": defaults.get(key)})
    return rows
