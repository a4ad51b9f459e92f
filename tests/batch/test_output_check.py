"""A batch's output root is checked before any forecasting work: a file, or a place where nothing can
be created, is one ``InputError`` naming it; a folder still to be created is fine and not created."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.partitions import check_output
from infra.errors import InputError


def test_the_output_must_be_a_folder_that_can_be_written(tmp_path):
    (tmp_path / "a.csv").write_text("unique_id,ds,y\n")
    for root in (tmp_path / "a.csv", tmp_path / "a.csv" / "forecasts"):
        with pytest.raises(InputError, match=f"forecast output {root}: {tmp_path / 'a.csv'} is a file, not a folder"):
            check_output(str(root))
    if Path("/proc/self").is_dir():  # Linux: /proc takes no new files, even from root
        with pytest.raises(InputError, match="forecast output /proc/x: cannot create files in /proc .*--output"):
            check_output("/proc/x")
    check_output(str(tmp_path / "new" / "forecasts"))  # created by the forecast, not by the check
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    check_output("s3://bucket/forecasts")  # checked when written
