"""The data plane core: record schema, operators, engines, readers and writers."""
