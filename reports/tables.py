"""Tables as text: aligned plain text for terminals and logs, pipe tables for markdown
(docs, MLflow model-version descriptions, Prefect reports)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def format_table(df: pd.DataFrame, digits: int = 3) -> str:
    """Plain aligned text table: index first, numbers right-aligned with ``digits`` decimals."""
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    body = [
        [str(idx)] + [f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        for idx, row in zip(df.index, df.itertuples(index=False))
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (index included) for docs and MLflow descriptions."""
    df = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    cols = list(df.columns)

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
