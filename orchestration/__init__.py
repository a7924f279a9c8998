"""Prefect flows and deployments around the data plane, and the `vlmdata` CLI."""
