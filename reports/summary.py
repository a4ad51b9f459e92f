"""What a person reads at the end of an onboarding (``tsfm onboard``, the demo): the season used,
the validation and test tables, which family the gate chose and why, and what was served."""
from __future__ import annotations

from pathlib import Path


def verdict_lines(onboarded: dict) -> list[str]:
    """The gate's choice among the families and its promotion decision, one sentence each."""
    lines = []
    challenger = onboarded.get("challenger")
    if challenger:
        lines.append(f"candidate: {challenger['family']} ({onboarded.get('model')} v{challenger['version']}), "
                     f"because {challenger['reason']}")
    promo = onboarded.get("promotion")
    if promo:
        state = "PROMOTED to champion" if promo.get("promoted") else "not promoted, stays challenger"
        lines.append(f"promotion: {state}: {promo.get('reason')}")
    return lines


def onboarding_summary(onboarded: dict, served: dict | None = None) -> str:
    lines = [
        "",
        f"season: {onboarded.get('season')}; frequency: {onboarded.get('freq') or 'integer steps'}",
        "",
        f"== validation (the fused model's weight alpha = {onboarded['alpha']:.2f} and the champion are chosen here) ==",
        Path(onboarded["val_table"]).read_text().rstrip(),
        "",
        "== test (never seen while choosing) ==",
        Path(onboarded["test_table"]).read_text().rstrip(),
        "",
        *verdict_lines(onboarded),
    ]
    if served:
        lines.append(f"served {served['alias']} ({served['model']}) at {served['url']}: {served['rows']} forecast rows "
                     f"for {len(served['series'])} series; first row: {served['head'][0]}")
    lines.append(f"results: {onboarded['result_dir']}")
    return "\n".join(lines)
