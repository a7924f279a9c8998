"""`vlmdata stats`: read or merge per-shard statistics of any WebDataset shards, summarise them, and write an HTML
report. Outside the data-plane core: `pipelines` never imports it (the shard writer's own per-shard statistics and
the histogram they use live in `pipelines.shard_stats` and `pipelines.stats`)."""
