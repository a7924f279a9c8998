"""Synthetic OCR data, the three sources of the GLM-4.1V report as generating operators: rendered documents
(`ocr_render`), natural-scene text read by PP-OCR (`ocr_scene`) and academic pages printed by Chromium
(`ocr_academic`)."""
