"""Inspect WebDataset shards: scan or merge per-shard statistics, summarise them, and write an HTML report."""
