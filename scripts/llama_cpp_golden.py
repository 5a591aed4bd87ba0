"""Writes tests/golden/llama_cpp_requant.json (run by scripts/llama_cpp_golden.sh,
which builds llama.cpp and sets the paths).

For each model and each of F16 and BF16:
  - theirs: `llama-quantize --allow-requantize MODEL theirs.gguf F16`;
  - ours:   `gguf-loader convert MODEL --dtype f16 -o ours.gguf`;
  - llama.cpp (through its ctypes bindings) continues a fixed prompt greedily
    on both; the two continuations must be equal;
  - the golden file keeps llama.cpp's tensor types, data SHA-256s,
    general.file_type and continuation, and this script reports any tensor of
    ours that differs (the Rust test asserts there are none).
"""

import argparse
import ctypes
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

PROMPT = "The capital of France is"
N_PREDICT = 32
DTYPES = {"f16": ("F16", 1), "bf16": ("BF16", 32)}


def load_bindings(pkg_dir: Path):
    """llama_cpp.llama_cpp (pure ctypes) without the package's __init__,
    which pulls in the high-level API and its dependencies."""
    pkg = types.ModuleType("llama_cpp")
    pkg.__path__ = [str(pkg_dir)]
    sys.modules["llama_cpp"] = pkg
    import llama_cpp.llama_cpp as L  # noqa: E402

    return L


def quiet_backend(L):
    """Initializes llama.cpp with its log silenced; returns the callback,
    which must be kept alive."""
    L.llama_backend_init()
    quiet = L.llama_log_callback(lambda level, text, user: None)
    L.llama_log_set(quiet, ctypes.c_void_p())
    return quiet


def load_model(L, model_path: Path):
    """The model at `model_path`, on the CPU."""
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = L.llama_model_load_from_file(str(model_path).encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp cannot load {model_path}")
    return model


def new_context(L, model, model_path: Path, threads: int = 2):
    """A context of 256 positions running on `threads` threads."""
    cp = L.llama_context_default_params()
    cp.n_ctx = 256
    cp.n_batch = 256
    cp.n_threads = threads
    cp.n_threads_batch = threads
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit(f"llama.cpp cannot make a context for {model_path}")
    return ctx


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tensors_of(path: Path):
    """[(name, type name, sha256 of the data)] and general.file_type."""
    import gguf

    r = gguf.GGUFReader(str(path))
    out = []
    for t in r.tensors:
        out.append([t.name, t.tensor_type.name, hashlib.sha256(t.data.tobytes()).hexdigest()])
    field = r.fields["general.file_type"]
    file_type = int(field.parts[field.data[0]][0])
    return out, file_type


class Generator:
    def __init__(self, L):
        self.L = L
        self._quiet = quiet_backend(L)

    def continue_prompt(self, model_path: Path):
        """Greedy continuation (argmax of the logits, no sampler) of PROMPT:
        the token ids and their text."""
        L = self.L
        model = load_model(L, model_path)
        vocab = L.llama_model_get_vocab(model)
        ctx = new_context(L, model, model_path)
        text = PROMPT.encode()
        buf = (L.llama_token * 256)()
        n = L.llama_tokenize(vocab, text, len(text), buf, 256, True, False)
        if n < 0:
            raise SystemExit("tokenize failed")
        n_vocab = L.llama_vocab_n_tokens(vocab)
        batch_tokens = (L.llama_token * n)(*buf[:n])
        ids = []
        pieces = b""
        for _ in range(N_PREDICT):
            rc = L.llama_decode(ctx, L.llama_batch_get_one(batch_tokens, len(batch_tokens)))
            if rc != 0:
                raise SystemExit(f"llama_decode: {rc} on {model_path}")
            logits = L.llama_get_logits_ith(ctx, -1)
            best = max(range(n_vocab), key=lambda i: logits[i])
            ids.append(best)
            if L.llama_vocab_is_eog(vocab, best):
                break
            piece = ctypes.create_string_buffer(256)
            k = L.llama_token_to_piece(vocab, best, piece, 256, 0, False)
            pieces += piece.raw[: max(k, 0)]
            batch_tokens = (L.llama_token * 1)(best)
        L.llama_free(ctx)
        L.llama_model_free(model)
        return {"ids": ids, "text": pieces.decode("utf-8", errors="replace")}


def to_json(o, indent=0) -> str:
    """JSON with one line per list of plain values (a tensor, the token ids)."""
    pad = " " * (indent + 1)
    if isinstance(o, dict):
        items = [f"{pad}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(o, list) and any(isinstance(x, (dict, list)) for x in o):
        items = [pad + to_json(x, indent + 1) for x in o]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(o, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindings", type=Path, required=True)
    ap.add_argument("--quantize", type=Path, required=True)
    ap.add_argument("--gguf-loader", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--sdist-sha256", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("models", nargs="+", help="name=path")
    a = ap.parse_args()

    gen = Generator(load_bindings(a.bindings))
    golden = {
        "about": "llama.cpp's own F16/BF16 requantization of the real models "
        "(scripts/llama_cpp_golden.sh): tensor types and data SHA-256s, "
        "general.file_type, and its greedy continuation of the prompt, which "
        "it also gives on `gguf-loader convert --dtype` of the same model",
        "llama_cpp_python": a.version,
        "sdist_sha256": a.sdist_sha256,
        "prompt": PROMPT,
        "n_predict": N_PREDICT,
        "models": {},
    }
    failures = []
    for spec in a.models:
        name, path = spec.split("=", 1)
        src = Path(path)
        entry = {"file": src.name, "sha256": sha256_file(src)}
        for dtype, (qname, want_ft) in DTYPES.items():
            theirs = a.work / f"{name}-theirs-{dtype}.gguf"
            ours = a.work / f"{name}-ours-{dtype}.gguf"
            subprocess.run(
                [str(a.quantize), "--allow-requantize", str(src), str(theirs), qname],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            subprocess.run(
                [str(a.gguf_loader), "convert", str(src), "--dtype", dtype, "-o", str(ours)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            t_theirs, ft_theirs = tensors_of(theirs)
            t_ours, ft_ours = tensors_of(ours)
            cont_theirs = gen.continue_prompt(theirs)
            cont_ours = gen.continue_prompt(ours)
            print(f"{name} {dtype}: {cont_theirs['text']!r}", file=sys.stderr)
            if cont_ours != cont_theirs:
                failures.append(f"{name} {dtype}: continuation {cont_ours} != {cont_theirs}")
            if ft_theirs != want_ft or ft_ours != ft_theirs:
                failures.append(f"{name} {dtype}: file_type ours {ft_ours}, theirs {ft_theirs}")
            ours_by_name = {t[0]: t for t in t_ours}
            for t in t_theirs:
                o = ours_by_name.pop(t[0], None)
                if o != t:
                    failures.append(f"{name} {dtype}: tensor {t[0]}: ours {o}, theirs {t}")
            for extra in ours_by_name:
                failures.append(f"{name} {dtype}: tensor {extra} only in ours")
            entry[dtype] = {"file_type": ft_theirs, "continuation": cont_theirs, "tensors": t_theirs}
            theirs.unlink()
            ours.unlink()
        golden["models"][name] = entry
    a.out.write_text(to_json(golden) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
