"""The GLM-4.1V-style vision-language model: presets, tokenizer/processor built offline, build/load/save."""
