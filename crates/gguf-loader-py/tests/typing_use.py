"""Ordinary uses of the API, checked by mypy (scripts/test-python.sh), never
run: the type hints must take what the functions take and give what they
give (a CPU load is numpy arrays, not a union to narrow)."""

import numpy as np

import gguf_loader


def uses(path: str) -> None:
    f = gguf_loader.open(path)
    w: np.ndarray = f.tensor("w").astype(np.float32)
    loaded: np.ndarray = f.load()["w"]
    on_gpu = f.load(device="cuda:0", names=["w"])
    views: np.ndarray = f.load("float16", copy=None)["w"] + f.tensor("w", copy=False)
    gguf_loader.dequantize(b"\0" * 18, 2)
    gguf_loader.dequantize(bytearray(18), gguf_loader.GGMLType.Q4_0)
    gguf_loader.dequantize(memoryview(b"\0" * 18), 2)
    tok = f.tokenizer()
    model = f.model("float16")
    cache = model.new_cache(64)
    logits: np.ndarray = model.forward(cache, tok.encode("Hi"))
    ids: list[int] = list(model.generate(tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True), 8, stop=tok.eog))
    text: str = tok.decode(ids)
    stream = tok.stream(continuing=True)
    text += "".join(stream.push(i) for i in ids) + stream.finish()
    rows: list[list[int]] = tok.encode_batch(line for line in text.splitlines())
    print(w, loaded, on_gpu, views, logits, text, rows, f.paths[0].endswith(".gguf"))
