#!/usr/bin/env bash
# Cuts the real models (SmolLM2-135M Q4_1, 98 MB; Gemma-3-270M Q4_K_M, 253 MB)
# into pieces that the device tool can carry to the GPU machine, which has no
# network, for scripts/gpu-check.sh's real-model step (llama.cpp's golden
# logits on the GPU, whole real models GPU vs CPU bit for bit, real text).
#
# One device call carries at most 64 MiB, the repository's files included,
# so the pieces go over several calls made one straight after another: the
# machine stays warm 30 s after a call, and what an earlier call carried
# stays there while it is warm. The last call carries gpu-carry/ (scripts/
# gpu-build.sh, run first), the manifest and the last pieces, and runs the
# check; a model some of whose pieces are missing there (the machine was
# given back between calls) is reported as owed, and everything else runs.
#
#   scripts/gpu-models.sh [smollm2] [gemma3]    (default: both)
#
# Writes gpu-models/ (ignored through .git/info/exclude): the pieces,
# manifest.txt (per model: name, file, bytes, SHA-256, pieces) and PLAN.md,
# the calls to make, in order.
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(smollm2 gemma3)
out=gpu-models
[ -d gpu-carry ] || { echo "gpu-carry/ is missing: run scripts/gpu-build.sh first" >&2; exit 1; }
grep -qx "$out/" .git/info/exclude 2>/dev/null || echo "$out/" >>.git/info/exclude
paths=()
for m in "${models[@]}"; do
    paths+=("$m=$(scripts/fetch-model.sh "$m")")
done
rm -rf "$out"
mkdir -p "$out"
# What travels with every call besides the carried paths: the files git
# tracks, and those it neither tracks nor ignores.
tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb gpu-carry | cut -f1)
python3 - "$out" "$tree" "$carry" "${paths[@]}" <<'EOF'
import hashlib, json, os, sys

out, tree, carry = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
models = [a.split("=", 1) for a in sys.argv[4:]]
LIMIT = 64 << 20
MARGIN = 2 << 20  # the manifest, the plan, files added before the run
per_call = LIMIT - tree - MARGIN
last_cap = per_call - carry
if last_cap < 0:
    sys.exit(f"gpu-carry/ ({carry} bytes) and the tree ({tree}) leave no room in a call")

# The models as one stream of bytes; calls 1..n take per_call bytes each
# from its start, the last call what remains (at most last_cap).
sizes = [os.path.getsize(p) for _, p in models]
total = sum(sizes)
n = max(0, -(-(total - last_cap) // per_call))
bounds = [min(i * per_call, total) for i in range(n + 1)] + [total]
calls = [[] for _ in range(n + 1)]
manifest = []
start = 0
for (name, path), size in zip(models, sizes):
    base = os.path.basename(path)
    pieces = []
    with open(path, "rb") as f:
        h = hashlib.sha256()
        for c in range(n + 1):
            lo, hi = max(bounds[c], start), min(bounds[c + 1], start + size)
            if lo >= hi:
                continue
            f.seek(lo - start)
            data = f.read(hi - lo)
            h.update(data)
            piece = f"{base}.{len(pieces):02d}"
            with open(os.path.join(out, piece), "wb") as p:
                p.write(data)
            pieces.append(piece)
            calls[c].append(f"{out}/{piece}")
    manifest.append(f"{name} {base} {size} {h.hexdigest()} {' '.join(pieces)}")
    start += size
with open(os.path.join(out, "manifest.txt"), "w") as f:
    f.write("\n".join(manifest) + "\n")
calls[-1] = ["gpu-carry", f"{out}/manifest.txt"] + calls[-1]
assert all(len(c) <= 8 for c in calls)

lines = [
    "# The GPU run with the real models (scripts/gpu-models.sh)",
    "",
    f"{len(calls)} device `run` calls, each straight after the one before (the machine",
    "stays warm 30 s; pieces carried earlier stay there while it is warm). Then `give_back`.",
    "",
]
for i, c in enumerate(calls, 1):
    last = i == len(calls)
    cmd = ("chmod +x gpu-carry/* gpu-carry/python/*; bash gpu-carry/gpu-check.sh"
           if last else "ls -l gpu-models")
    size = sum(os.path.getsize(p) if os.path.isfile(p) else 0 for p in c)
    if last:
        size += carry
    lines.append(f"{i}. carry {json.dumps(c)} ({size / 1e6:.1f} MB + the tree's "
                 f"{tree / 1e6:.1f} MB), command `{cmd}`, timeout_s {590 if last else 120}")
with open(os.path.join(out, "PLAN.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
