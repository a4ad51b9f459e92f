"""Sources that cannot be read at all, and a horizon a store was not validated for: each is an
``InputError`` (one line, exit 2 in the CLI) that names the file or setting to fix, never a
traceback. Real files and a real (refused) S3 endpoint; no flow runs."""

from __future__ import annotations

import gzip
import lzma

import pytest

from infra.errors import InputError
from infra.servers import free_port
from store.sources import check_header, read_source
from store.validate import IngestError
from tracking.retries import is_transient

ROWS = "unique_id,ds,y\n" + "".join(f"s{k},2020-{m:02d}-01,{m + k}\n" for k in range(3) for m in range(1, 13))


def test_a_horizon_longer_than_the_stores_is_a_user_error(write_file, tmp_path):
    from store.canonical import split_horizons
    from store.ingest import ingest_to_store

    store = ingest_to_store(str(write_file("m.csv", ROWS)), "m", 2, 2, tmp_path / "data")
    assert split_horizons(store, 2, per_series=False) == 2
    with pytest.raises(InputError, match="horizon 3 exceeds the 2 the store at .* was validated for; re-ingest"):
        split_horizons(store, 3, per_series=False)


def test_a_compressed_file_that_is_not_what_its_name_says_or_is_cut_short(tmp_path):
    whole = gzip.compress(ROWS.encode())
    files = {
        "plain.csv.zip": (ROWS.encode(), "not a readable zip file"),
        "cut.csv.gz": (whole[: len(whole) // 2], "not a readable gzip file"),
        "plain.csv.gz": (ROWS.encode(), "not a readable gzip file"),
        "cut.csv.xz": (lzma.compress(ROWS.encode())[:60], "not a readable xz file"),
    }
    for name, (data, message) in files.items():
        (tmp_path / name).write_bytes(data)
        for read in (check_header, read_source):  # the CLI's check before a flow starts, and the read itself
            with pytest.raises(IngestError, match=message) as e:
                read(str(tmp_path / name))
            assert str(e.value).startswith(f"{tmp_path / name}: ") and "cut short" in str(e.value)
    (tmp_path / "whole.csv.gz").write_bytes(whole)
    assert len(read_source(str(tmp_path / "whole.csv.gz")).frame) == 36


def test_s3_without_credentials_fails_at_once(aws_env):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        aws_env.delenv(var)
    aws_env.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup
    with pytest.raises(IngestError, match="s3://b/x.csv: no AWS credentials found") as e:
        read_source("s3://b/x.csv")
    assert "AWS_ACCESS_KEY_ID" in str(e.value) and not is_transient(e.value)  # no retry can cure it


def test_s3_endpoint_that_does_not_answer_is_named_and_still_retried(aws_env):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    aws_env.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    aws_env.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would take seconds
    with pytest.raises(IngestError, match=f"cannot reach the S3 endpoint {endpoint}: check AWS_ENDPOINT_URL_S3") as e:
        read_source("s3://b/x.csv")
    assert is_transient(e.value)  # the ingest task's retries (tracking.retries) still try again first
    aws_env.setenv("AWS_ENDPOINT_URL_S3", "notaurl")
    with pytest.raises(IngestError, match="Invalid endpoint: notaurl"):
        read_source("s3://b/x.csv")
