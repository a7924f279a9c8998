"""Training stack: shard streaming and packing, the pretrain/SFT loop, checkpoints, metrics."""
