"""Curation operators: decode/validate, heuristics, dedup, CLIP score, concept balancing."""
