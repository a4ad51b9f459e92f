"""The demo's closing printout: what was trained, what won, what was served."""
from __future__ import annotations

from pathlib import Path


def report_text(onboarded: dict, served: dict | None) -> str:
    promo = onboarded.get("promotion", {})
    lines = [
        "",
        f"== validation (fusion weight alpha = {onboarded['alpha']:.2f}, chosen here) ==",
        Path(onboarded["val_table"]).read_text().rstrip(),
        "",
        "== test ==",
        Path(onboarded["test_table"]).read_text().rstrip(),
        "",
        f"promotion of {promo.get('model')} v{promo.get('version')}: "
        f"{'PROMOTED to champion' if promo.get('promoted') else 'not promoted'} ({promo.get('reason')})",
    ]
    if served:
        lines.append(f"served {served['alias']} at {served['url']}: {served['rows']} forecast rows for "
                     f"{len(served['series'])} series; first row: {served['head'][0]}")
    lines.append(f"results: {onboarded['result_dir']}")
    return "\n".join(lines)
