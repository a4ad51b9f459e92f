"""A batch forecast's Prefect artifact: what was forecast, by which model, where it went."""

from __future__ import annotations


def batch_markdown(summary: dict, mlflow_link: str) -> str:
    """``summary``: ``batch.run.commit_forecast``'s, with its timings."""
    return (
        f"# Batch forecast of {summary['domain']}, origin {summary['origin']}\n\n"
        f"| | |\n|---|---|\n| model | {summary['model']} v{summary['model_version']} "
        f"({summary['family']}) |\n| series | {summary['series']} ({summary['skipped']} without a "
        f"forecast) |\n| rows | {summary['rows']} |\n| horizon | {summary['horizon']} |\n"
        f"| time | {summary['seconds']} s ({summary['series_per_s']} series/s, "
        f"{summary['workers']} worker(s)) |\n| output | `{summary['output_uri']}` |\n"
        f"| MLflow | {mlflow_link} |\n"
    )
