"""Batch forecasts: every series of a domain forecast by its champion, chunk by chunk, into one
Parquet partition per forecast origin (locally or on S3), visible to readers only once complete."""
