"""Writes tests/golden/logits/{name}.json and {name}.logits.gz: llama.cpp's
logits at every position of a few prompts, and its greedy continuation, on
the F16 GGUF that `gguf-loader convert --dtype f16` makes of each real model
(run by scripts/llama_cpp_logits.sh, which builds llama.cpp and converts).

The prompts are fixed texts tokenized here by llama.cpp (with the model's
own add-BOS setting); the golden file keeps the token ids, so the Rust test
of the forward pass does not depend on a tokenizer.

Logits are stored compactly but exactly enough for an NMSE check at 1e-4:
each position's vector is quantized to int16 as `mean + q * step` with
`step = std / 256` (the quantization alone adds an NMSE of
1 / (12 * 256^2), about 1.3e-6), the high bytes and low bytes of a vector
stored as two planes (the high plane compresses well), all gzip'd. The JSON
holds each position's mean and step.
"""

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from llama_cpp_golden import load_bindings, load_model, new_context, quiet_backend

PROMPTS = {
    "smollm2": [
        "The capital of France is",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    ],
    "gemma3": [
        "The capital of France is",
    ],
}
N_PREDICT = 32
STEPS_PER_STD = 256


def quantize(logits: np.ndarray):
    """(mean, step, int16 planes) of one position's logits."""
    x = logits.astype(np.float64)
    mean = float(x.mean())
    step = float(x.std()) / STEPS_PER_STD
    q = np.rint((x - mean) / step)
    if np.abs(q).max() > 32767:
        raise SystemExit("a logit lies beyond 128 standard deviations")
    q = q.astype("<i2")
    raw = q.view(np.uint8).reshape(-1, 2)
    planes = np.concatenate([raw[:, 1], raw[:, 0]])  # high bytes, then low
    return mean, step, planes.tobytes()


class Runner:
    def __init__(self, L, threads: int):
        self.L = L
        self.threads = threads
        self._quiet = quiet_backend(L)

    def run(self, model_path: Path, prompts):
        L = self.L
        model = load_model(L, model_path)
        vocab = L.llama_model_get_vocab(model)
        n_vocab = L.llama_vocab_n_tokens(vocab)
        add_bos = bool(L.llama_vocab_get_add_bos(vocab))
        results = []
        for text in prompts:
            ctx = new_context(L, model, model_path, self.threads)
            raw = text.encode()
            buf = (L.llama_token * 256)()
            n = L.llama_tokenize(vocab, raw, len(raw), buf, 256, add_bos, False)
            if n < 0:
                raise SystemExit("tokenize failed")
            ids = list(buf[:n])
            # One token per llama_decode call: llama.cpp's batched prompt
            # path is less exact than its single-token one (on SmolLM2 its
            # position-0 logits move by NMSE 1.4e-4 between a batch of 5 and
            # a batch of 1, a constant offset of about -0.035), so every
            # position is taken from the single-token path.
            logits = []
            for t in ids:
                one = (L.llama_token * 1)(t)
                rc = L.llama_decode(ctx, L.llama_batch_get_one(one, 1))
                if rc != 0:
                    raise SystemExit(f"llama_decode: {rc} on {model_path}")
                p = L.llama_get_logits_ith(ctx, -1)
                logits.append(np.ctypeslib.as_array(p, shape=(n_vocab,)).copy())
            # Greedy continuation: argmax of the logits, one token at a time.
            greedy = []
            last = logits[-1]
            for _ in range(N_PREDICT):
                best = int(np.argmax(last))
                greedy.append(best)
                if L.llama_vocab_is_eog(vocab, best):
                    break
                one = (L.llama_token * 1)(best)
                rc = L.llama_decode(ctx, L.llama_batch_get_one(one, 1))
                if rc != 0:
                    raise SystemExit(f"llama_decode: {rc} on {model_path}")
                p = L.llama_get_logits_ith(ctx, -1)
                last = np.ctypeslib.as_array(p, shape=(n_vocab,)).copy()
            L.llama_free(ctx)
            results.append({"text": text, "ids": ids, "logits": logits, "greedy": greedy})
        L.llama_model_free(model)
        return n_vocab, results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindings", type=Path, required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--sdist-sha256", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("models", nargs="+", help="name=path of the F16 GGUF")
    a = ap.parse_args()

    runner = Runner(load_bindings(a.bindings), a.threads)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    for spec in a.models:
        name, path = spec.split("=", 1)
        n_vocab, results = runner.run(Path(path), PROMPTS[name])
        blob = bytearray()
        prompts = []
        for r in results:
            means, steps = [], []
            for row in r["logits"]:
                mean, step, planes = quantize(row)
                means.append(mean)
                steps.append(step)
                blob += planes
            prompts.append(
                {"text": r["text"], "ids": r["ids"], "mean": means, "step": steps, "greedy": r["greedy"]}
            )
        golden = {
            "about": "llama.cpp's logits at every prompt position (fed one token per llama_decode) "
            "and greedy continuation on "
            "`gguf-loader convert --dtype f16` of the model (scripts/llama_cpp_logits.sh). "
            f"{name}.logits.gz holds, per prompt and position in order, n_vocab int16 values q "
            "(all high bytes, then all low bytes) with logit = mean + q * step.",
            "llama_cpp_python": a.version,
            "sdist_sha256": a.sdist_sha256,
            "threads": a.threads,
            "n_vocab": n_vocab,
            "prompts": prompts,
        }
        (a.out_dir / f"{name}.json").write_text(json.dumps(golden, indent=1) + "\n")
        with open(a.out_dir / f"{name}.logits.gz", "wb") as f:
            f.write(gzip.compress(bytes(blob), compresslevel=9, mtime=0))
        for r in results:
            print(f"{name}: {len(r['ids'])} prompt tokens, greedy {r['greedy']}", file=sys.stderr)


if __name__ == "__main__":
    main()
