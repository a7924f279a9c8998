"""Engines run the same operators: `spark` (default) and, later, `beam`."""
