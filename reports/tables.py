"""Tables as text: aligned plain text for terminals and logs, pipe tables for markdown
(docs, MLflow model-version descriptions, Prefect reports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def pipe_table(header: Sequence[str], rows: Iterable[Sequence[str]], right_from: int | None = None) -> str:
    """The one markdown pipe-table renderer (reports, MLflow descriptions, Prefect artifacts, benchmarks):
    cells are text already; columns from index ``right_from`` on are right-aligned."""
    align = ["---:|" if right_from is not None and i >= right_from else "---|" for i in range(len(header))]
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "".join(align)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame, digits: int = 3, na: str | None = None) -> str:
    """A frame as a pipe table (index included unless it is a plain range): floats with ``digits``
    decimals; NaN as an empty cell, or every non-finite value as ``na`` where given."""
    df = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            if na is not None and not np.isfinite(v):
                return na
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    return pipe_table(list(df.columns), ([cell(v) for v in row] for row in df.itertuples(index=False)))
