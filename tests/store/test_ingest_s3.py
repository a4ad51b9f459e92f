"""S3 sources against a real HTTP endpoint (moto server); boto3 finds it from the env."""

from __future__ import annotations

import io

import boto3
import pandas as pd
import pytest

from store.canonical import read_store
from store.ingest import ingest_to_store
from store.validate import IngestError

CSV = "unique_id,ds,y\n" + "".join(f"s{k},2024-01-01 {h:02d}:00,{h * k}\n" for k in (1, 2) for h in range(24))


@pytest.fixture
def bucket(moto_endpoint, aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = boto3.client("s3")
    name = "tsfm-raw"
    if name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=name)
    return s3, name


def test_csv_and_parquet_from_s3(bucket, tmp_path):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="in/hourly.csv", Body=CSV.encode())
    buf = io.BytesIO()
    pd.read_csv(io.StringIO(CSV)).rename(columns={"unique_id": "item_id"}).to_parquet(buf)
    s3.put_object(Bucket=name, Key="in/hourly.parquet", Body=buf.getvalue())

    for key, domain in (("in/hourly.csv", "s3-csv"), ("in/hourly.parquet", "s3-pq")):
        df, meta = read_store(ingest_to_store(f"s3://{name}/{key}", domain, 2, 4, tmp_path))
        assert meta["source"] == f"s3://{name}/{key}"
        assert (meta["n_series"], meta["rows_kept"], meta["freq"]) == (2, 48, "h")
        assert df[df.unique_id == "s2"]["y"].tolist() == [2.0 * h for h in range(24)]


def test_generic_endpoint_variable_works_too(moto_endpoint, aws_env, tmp_path):
    aws_env.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # not the S3-specific one
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="generic")
    s3.put_object(Bucket="generic", Key="x.csv", Body=CSV.encode())
    _, meta = read_store(ingest_to_store("s3://generic/x.csv", "generic", 2, 4, tmp_path))
    assert meta["rows_kept"] == 48


def test_missing_key_is_a_clear_error(bucket, tmp_path):
    _, name = bucket
    with pytest.raises(IngestError, match=f"s3://{name}/absent.csv: NoSuchKey"):
        ingest_to_store(f"s3://{name}/absent.csv", "absent", 2, 4, tmp_path)
    assert not (tmp_path / "store" / "absent").exists()
