#!/usr/bin/env python3
"""Prints gguf-py's GGML_QUANT_SIZES as JSON: {"Q4_0": [block_size, type_size], ...}.

The oracle of tests/block_layouts.rs. Arguments are ignored.
"""
import json

from gguf.constants import GGML_QUANT_SIZES

print(json.dumps({t.name: list(v) for t, v in GGML_QUANT_SIZES.items()}))
