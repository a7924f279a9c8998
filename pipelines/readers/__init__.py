"""Readers: turn user inputs (folders, WebDataset tars, Parquet) into partitions of Arrow record batches."""

from pipelines.readers.base import InputError, Part, ReaderConfig, plan_parts, read_part

__all__ = ["InputError", "Part", "ReaderConfig", "plan_parts", "read_part"]
