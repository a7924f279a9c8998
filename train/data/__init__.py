"""Shards to packed batches: WebDataset streaming, weighted mixing, encoding with the processor, packing."""
