"""What a person reads at the end of an onboarding (``tsfm onboard``, the demo): the season used,
the validation and test tables, which family the gate chose and why, and what was served."""

from __future__ import annotations

from pathlib import Path


def verdict_lines(onboarded: dict) -> list[str]:
    """The gate's choice among the families and its promotion decision, one sentence each."""
    lines = []
    challenger = onboarded.get("challenger")
    if challenger:
        lines.append(
            f"candidate: {challenger['family']} ({onboarded.get('model')} v{challenger['version']}), "
            f"because {challenger['reason']}"
        )
    promo = onboarded.get("promotion")
    if promo:
        state = "PROMOTED to champion" if promo.get("promoted") else "not promoted, stays challenger"
        lines.append(f"promotion: {state}: {promo.get('reason')}")
    return lines


def validation_line(counts: dict, asked: int | None = None) -> str:
    """How many rolling origins validation had: ``counts`` maps origins -> number of series."""
    counts = {int(k): int(v) for k, v in counts.items()}
    windows = sum(k * n for k, n in counts.items())
    if len(counts) == 1:
        [(k, _)] = counts.items()
        per = (
            "1 window per series, right before test"
            if k == 1
            else f"{k} rolling origins per series, each a horizon apart, all before test"
        )
    else:
        per = "rolling origins a horizon apart, all before test: " + ", ".join(
            f"{n} series with {k}" for k, n in sorted(counts.items(), reverse=True)
        )
    if asked and min(counts, default=asked) < asked:
        per += f" ({asked} asked for; a series keeps one horizon of train points before its first origin)"
    return f"validation: {windows} windows, {per}"


def alpha_line(alpha: float, grid: list[float] | None = None) -> str:
    """The fusion weight, and a word when it sits at the edge of its grid."""
    line = f"fusion weight alpha = {alpha:.2f} (chosen on validation)"
    if grid and alpha >= max(grid):
        line += ": at the grid's top, the adapter's forecast alone was best; the backbone adds nothing here"
    elif grid and alpha <= min(grid):
        line += ": at the grid's bottom, the adapter was no help on validation; the fused model is the backbone"
    return line


def backbone_line(backbone: dict | None) -> list[str]:
    """Which backbone the neural families stand on, and why (the default, or the shipped long-context
    one chosen on validation for daily or finer data)."""
    if not backbone or not backbone.get("version"):
        return []
    why = backbone.get("why")
    return [f"backbone: backbone v{backbone['version']} ({backbone.get('uri')})" + (f", {why}" if why else "")]


def context_line(backbone: int | None, memory: int | None) -> list[str]:
    """How much history each neural family read (the backbone family its training context, the
    datastore, adapter and fused model their windows)."""
    if not backbone or not memory:
        return []
    return [
        f"contexts: the backbone family reads up to {backbone} points (the backbone's training context), "
        f"the datastore, adapter and fused model {memory}"
    ]


def ensemble_line(record: dict | None, versions: dict | None = None) -> str:
    """The weighted ensemble's members and weights (fitted on validation), or why there is none."""
    record = record or {}
    weights = {f: w for f, w in (record.get("weights") or {}).items() if w > 0}
    if not weights:
        return f"ensemble: none ({record.get('reason', 'not fitted')})"
    parts = ", ".join(
        f"{f} {w:.2f}" + (f" (v{versions[f]})" if versions and f in versions else "")
        for f, w in sorted(weights.items(), key=lambda kv: -kv[1])
    )
    if not record.get("offered"):
        return f"ensemble: not a candidate, {record.get('reason')}"
    return f"ensemble weights (greedy selection on validation, cross-validated over origins): {parts}"


def teacher_line(kept: dict) -> list[str]:
    """How much of the kNN teacher's gain over the backbone the fused model kept (where it had one)."""
    parts = [f"{part} {100 * v:.0f}%" for part, v in kept.items() if v is not None]
    if not parts:
        return []
    return ["the fused model kept " + ", ".join(parts) + " of the kNN teacher's sCRPS gain over the backbone"]


def timing_line(stages: dict[str, float] | None, total_s: float | None = None) -> list[str]:
    """Where the onboarding's time went, largest first; what is left of ``total_s`` is registration,
    reports and orchestration."""
    if not stages:
        return []
    stages = {k: v for k, v in stages.items() if v >= 0.05}
    if total_s is not None and sum(stages.values()) > total_s:  # adapt and evaluate came from the cache
        return [
            f"time: {total_s:.1f} s; fitting and evaluation reused from an earlier run of the same data and "
            "settings (its stages: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in stages.items()) + ")"
        ]
    if total_s is not None:
        stages["registration_and_orchestration"] = total_s - sum(stages.values())
    parts = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
    return [f"time by stage: {parts}" + (f" (total {total_s:.1f} s)" if total_s is not None else "")]


def onboarding_summary(onboarded: dict, served: dict | None = None) -> str:
    lines = [
        "",
        f"season: {onboarded.get('season')}; frequency: {onboarded.get('freq') or 'integer steps'}",
        validation_line(onboarded.get("val_origins") or {}, onboarded.get("val_origins_asked")),
        alpha_line(onboarded["alpha"], onboarded.get("alpha_grid")),
        *backbone_line(onboarded.get("backbone")),
        *context_line(onboarded.get("backbone_context"), onboarded.get("context_length")),
        ensemble_line(onboarded.get("ensemble"), onboarded.get("versions")),
        *teacher_line(onboarded.get("teacher_gain_kept") or {}),
        "",
        "== validation (the fusion weight and the champion are chosen here) ==",
        Path(onboarded["val_table"]).read_text().rstrip(),
        "",
        "== test (never seen while choosing) ==",
        Path(onboarded["test_table"]).read_text().rstrip(),
        "",
        *verdict_lines(onboarded),
    ]
    if served:
        lines.append(
            f"served {served['alias']} ({served['model']}) at {served['url']}: {served['rows']} forecast rows "
            f"for {len(served['series'])} series; first row: {served['head'][0]}"
        )
    lines += timing_line(onboarded.get("stage_seconds"), onboarded.get("wall_s"))
    lines.append(f"results: {onboarded['result_dir']}")
    return "\n".join(lines)


def ingest_summary(store_dir: str | Path) -> str:
    """What one ingest kept and set aside, and where the quarantine file is."""
    import pandas as pd

    from store.canonical import QUARANTINE_FILE, read_meta

    meta = read_meta(store_dir)
    lines = [
        f"ingested {meta['domain']}: {meta['rows_in']} rows in, {meta['rows_kept']} kept, "
        f"{meta['rows_quarantined']} quarantined; {meta['n_series']} series; frequency "
        f"{meta.get('freq') or 'integer steps'}, season {meta.get('season_length')} "
        f"(from the {meta.get('season_source', 'default')})"
    ]
    if meta.get("timezone"):
        lines.append(f"timestamps: {meta['timezone']}")
    lines += [f"WARNING: {note}" for note in meta.get("notes") or []]
    from store.ingest import previous_version

    previous = previous_version(Path(store_dir))
    if previous is not None:
        folder, before = previous
        # fewer series, or a fifth fewer rows, than the version it replaced: say so loudly
        drop = meta["n_series"] < before.get("n_series", 0) or meta["rows_kept"] < 0.8 * before.get("rows_kept", 0)
        lines.append(
            ("WARNING: this version keeps " if drop else "this version keeps ")
            + f"{meta['rows_kept']} rows of {meta['n_series']} series; the previous one kept "
            f"{before['rows_kept']} rows of {before['n_series']} series and is kept at {folder}"
            + (" (copy it back over the store to restore it)" if drop else "")
        )
        if before.get("freq") != meta.get("freq"):
            lines.append(
                f"WARNING: the frequency changed from {before.get('freq') or 'integer steps'} to "
                f"{meta.get('freq') or 'integer steps'}: a champion fitted on the old one (if the domain has "
                f"one) no longer applies, and tsfm forecast refuses it; onboard the domain again (tsfm onboard "
                f"--domain {meta['domain']})"
            )
    if meta["rows_quarantined"]:
        path = Path(store_dir) / QUARANTINE_FILE
        q = pd.read_parquet(path)
        counts = q["reason"].map(_reason_kind).value_counts()
        lines.append("quarantined: " + "; ".join(f"{n} x {reason}" for reason, n in counts.items()))
        dropped = sorted(set(q.loc[q["reason"].str.contains("2*horizon", regex=False), "unique_id"].astype(str)))
        if dropped:
            lines.append(
                f"{len(dropped)} series dropped whole (too short for 2 x horizon + min_train): "
                + ", ".join(dropped[:10])
                + (" ..." if len(dropped) > 10 else "")
            )
        off = q.loc[q["reason"].str.contains(" grid at ", regex=False), "unique_id"].astype(str)
        if len(off):
            names = sorted(set(off))
            lines.append(
                f"{len(names)} series change their spacing (off the {meta.get('freq')} grid): {len(off)} "
                "rows from the change on quarantined: " + ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            )
        first = q.iloc[0]
        where = (
            f"row {first['row']}"
            if "file" not in q.columns or first["file"] == meta.get("source")
            else (f"{first['file']} row {first['row']}")
        )
        lines.append(f"first: {where}, column {first['column']}: {first['reason']}")
        lines.append(f"every quarantined row with its reason: {path}")
    return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """A quarantine reason without the row's own values: what ``ingest_summary`` counts."""
    if "2*horizon + min_train" in reason:
        return "series too short"
    if reason.startswith("duplicate"):
        return "duplicate (unique_id, ds)"
    if " grid at " in reason:
        return "series changes its spacing (rows from the change on)"
    if "UTC offset" in reason:
        return "series mixes timestamps with and without a UTC offset"
    return reason.split(":", 1)[0]
