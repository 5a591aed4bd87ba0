#!/usr/bin/env bash
# The GPU check, on the GPU machine, with the binaries scripts/gpu-build.sh
# put in gpu-carry/ (run from the repository root: gpu-carry/gpu-check.sh).
# Synthesizes the models it needs, runs the CUDA tests (every type x f32,
# f16, bf16 against the CPU bit for bit, random blocks, every staging mode,
# lazy layers, progress and cancel), the real models where the device calls
# carried their pieces (scripts/gpu-models.sh: llama.cpp's golden logits on the
# GPU, whole models GPU vs CPU, real text), the GPU forward pass against the CPU's
# and the stability check on the GPU, GPU generation speed, converts
# synthesized models of every type on the CPU and on the GPU and compares the
# files byte for byte, multiplies a loaded weight with cuBLAS, times the first
# and the second start (kernel compile vs the disk cache), checks the Python
# package (DLPack into torch and cupy), prints the benchmark report (transfer
# rates, every kernel, whole-model loads), times `verify` on the host CPU
# against one read of the same bytes, and last the host CPU's decode
# rates (issue #13; needs no GPU, so a timeout cuts only that). Everything it
# prints also goes to $OUT/gpu-report.md; run it with a timeout near 590 s
# (about 6 minutes expected; QUICK=1 skips the 7B model).
#
# Settings: CUDA_LIB (default /usr/local/cuda/targets/x86_64-linux/lib) is
# put on LD_LIBRARY_PATH; GGUF_LOADER_CUDA_INCLUDE (default
# /usr/local/cuda/include) is NVRTC's include path; QUICK=1 skips the 7B
# model and repeats less; REHEARSAL=1 is a dry run against the stand-in driver
# (scripts/gpu-rehearse.sh): QUICK, without the 1.1B-parameter stability run
# and the host CPU's decode rates, which the stand-in would make slow.
set -uo pipefail
[ "${REHEARSAL:-0}" = 1 ] && QUICK=1
cd "$(dirname "$0")"
B=$PWD
OUT=${OUT:-$(mktemp -d)}
W=$(mktemp -d)
export LD_LIBRARY_PATH=${CUDA_LIB:-/usr/local/cuda/targets/x86_64-linux/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Where the toolkit lacks libnvrtc / libcublas: the ones in python3's pip
# packages (nvidia-cuda-nvrtc, nvidia-cublas), after the toolkit's.
for d in "$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null)"/lib/python3*/site-packages/nvidia/{cu13,cuda_nvrtc,cublas}/lib; do
    [ -d "$d" ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
export GGUF_LOADER_CUDA_INCLUDE=${GGUF_LOADER_CUDA_INCLUDE:-/usr/local/cuda/include}
export GGUF_LOADER_CUDA_CACHE=$W/kernel-cache GGUF_LOADER_REQUIRE_GPU=1
mkdir -p "$OUT"
report=$OUT/gpu-report.md
exec > >(tee "$report") 2>&1
tee_pid=$!
# On any exit: tee writes the last lines before the script ends (bash 5.1+).
trap 'exec >&- 2>&-; wait $tee_pid 2>/dev/null; rm -rf "$W"' EXIT
fail=0
step() { echo; echo "## $*"; }
check() {
    local name=$1
    shift
    if "$@"; then echo "PASS $name"; else echo "FAIL $name"; fail=1; fi
}

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv 2>&1 | head -3
lscpu | grep -E '^(Model name|CPU\(s\)|Flags)' | sed 's/\(Flags:\).*\(avx512[a-z]*\).*/\1 ... \2 .../' | head -3
grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
free -g | head -2
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for l in libnvrtc.so libcublas.so; do
    echo "$l: $(for d in ${LD_LIBRARY_PATH//:/ }; do ls "$d"/$l* 2>/dev/null; done | head -1)"
done

step "first and second start (kernels compiled, then from the disk cache)"
"$B/gguf-loader" synth --preset tinyllama-1.1b --type q4_0 -o "$W/tinyllama-q4_0.gguf" >/dev/null
"$B/gguf-loader" synth --preset smollm2-135m --type q4_1 -o "$W/smollm2-q4_1.gguf" >/dev/null
for i in 1 2; do
    if ! "$B/gguf-loader" load "$W/tinyllama-q4_0.gguf" --device cuda --json; then
        echo "FAIL: no usable GPU (above); nothing else can run"
        exit 1
    fi
done

step "CUDA tests (GPU against CPU, bit for bit)"
check cuda-tests env GGUF_LOADER_MODEL="$W/smollm2-q4_1.gguf" "$B/cuda-tests" --test-threads 1

step "the real models, where carried (scripts/gpu-models.sh): llama.cpp's logits on the GPU, GPU = CPU"
# Reassembled from the pieces the device calls carried into ../gpu-models,
# checked by size and SHA-256; a model with a piece missing is owed.
real_smol="" real_gemma=""
if [ -f "$B/../gpu-models/manifest.txt" ]; then
    mkdir -p "$W/real"
    while read -r name file bytes sum pieces; do
        whole=1
        for p in $pieces; do [ -f "$B/../gpu-models/$p" ] || whole=0; done
        if [ $whole = 0 ]; then
            echo "$name: pieces missing (the machine went back between calls?): its real-model checks are owed"
            continue
        fi
        for p in $pieces; do cat "$B/../gpu-models/$p"; done >"$W/real/$file"
        if [ "$(stat -c %s "$W/real/$file")" = "$bytes" ] &&
            [ "$(sha256sum "$W/real/$file" | cut -d' ' -f1)" = "$sum" ]; then
            echo "$name: $file whole ($bytes bytes, SHA-256 checked)"
            case $name in smollm2) real_smol=$W/real/$file ;; gemma3) real_gemma=$W/real/$file ;; esac
        else
            echo "FAIL $name: $file reassembled with the wrong size or SHA-256"
            fail=1
        fi
    done <"$B/../gpu-models/manifest.txt"
else
    echo "no gpu-models/manifest.txt: the real models were not carried; their GPU checks are owed"
fi
if [ -n "$real_smol$real_gemma" ]; then
    # Unset variables fall back to a cache that is not here: that model is skipped.
    real_env=(GGUF_LOADER_REPO="$B/.." GGUF_LOADER_MODEL="${real_smol:-/nonexistent}" GGUF_LOADER_GEMMA="${real_gemma:-/nonexistent}")
    check "golden logits and GPU = CPU on the real models" env "${real_env[@]}" \
        "$B/forward-tests" --test-threads 1 --nocapture gpu_logits_and_greedy_tokens
    check "real models loaded on the GPU = CPU, bit for bit" env "${real_env[@]}" \
        "$B/cuda-tests" --test-threads 1 real_models_bit_for_bit
    for m in $real_smol $real_gemma; do
        for d in cpu cuda; do
            "$B/gguf-loader" generate "$m" --prompt "The capital of France is" -n 24 --device $d >"$W/text-$d.txt" ||
                { echo "FAIL generate $(basename "$m") on $d"; fail=1; }
        done
        echo "$(basename "$m") on the GPU: $(tr '\n' ' ' <"$W/text-cuda.txt")"
        cmp -s "$W/text-cpu.txt" "$W/text-cuda.txt" && echo "  the same text as on the CPU" ||
            echo "  CPU's text: $(tr '\n' ' ' <"$W/text-cpu.txt")"
        check "load $(basename "$m") --device cuda" "$B/gguf-loader" load "$m" --device cuda
        # Perplexity over the license (4 chunks of 128): the GPU's against
        # the CPU's (tests/golden/perplexity.json holds llama.cpp's); the
        # CPU's log-probabilities kept, and the GPU's KL divergence from them.
        for d in cpu cuda; do
            base=()
            [ $d = cpu ] && base=(--kl-divergence-base "$W/base.kld" --force)
            "$B/gguf-loader" perplexity "$m" -f "$B/../LICENSE-APACHE" --ctx 128 --chunks 4 --json \
                --device $d "${base[@]}" >"$W/ppl-$d.json" || { echo "FAIL perplexity $(basename "$m") on $d"; fail=1; }
        done
        echo "$(basename "$m") perplexity, CPU: $(cat "$W/ppl-cpu.json")"
        echo "$(basename "$m") perplexity, GPU: $(cat "$W/ppl-cuda.json")"
        "$B/gguf-loader" perplexity "$m" --kl-divergence-base "$W/base.kld" --kl-divergence --device cuda \
            >"$W/kld.txt" || { echo "FAIL perplexity --kl-divergence $(basename "$m") on cuda"; fail=1; }
        echo "$(basename "$m") the GPU's KL divergence from the CPU:"
        grep -E '^(Mean    KLD|Maximum KLD|RMS|Same)' "$W/kld.txt" | sed 's/^/  /'
        # A conversation on the GPU: the VRAM cache truncated back and
        # continued between turns, and (in 110 tokens) the oldest turns
        # forgotten before the fourth.
        for d in cpu cuda; do
            printf 'What is the capital of France?\nAnd of Germany?\nWhich of the two is larger?\nName a museum there.\n' |
                "$B/gguf-loader" generate "$m" --interactive -n 16 --ctx 110 --device $d >"$W/turns-$d.txt" ||
                { echo "FAIL generate --interactive $(basename "$m") on $d"; fail=1; }
        done
        echo "$(basename "$m") conversation on the GPU: $(tr '\n' '|' <"$W/turns-cuda.txt")"
        cmp -s "$W/turns-cpu.txt" "$W/turns-cuda.txt" && echo "  the same turns as on the CPU" ||
            echo "  CPU's turns: $(tr '\n' '|' <"$W/turns-cpu.txt")"
    done
fi

step "convert on the GPU = convert on the CPU, byte for byte, every type"
# One output per type, in turn (cuda-tests above has every type x output bit
# for bit; this is the CLI's path, a process each, so fewer starts).
converted=0
outs=(f16 bf16 f32)
i=0
for ty in f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq2_xxs iq2_xs iq2_s \
    iq3_xxs iq3_s iq1_s iq1_m iq4_nl iq4_xs tq1_0 tq2_0 mxfp4 nvfp4 q1_0 q2_0; do
    m=$W/tiny-$ty.gguf
    d=${outs[i % 3]}
    i=$((i + 1))
    "$B/gguf-loader" synth --preset tiny-test --type "$ty" -o "$m" >/dev/null 2>&1 || { echo "synth $ty: not made"; continue; }
    # No file of an earlier type may be compared if a convert fails.
    rm -f "$W/c.gguf" "$W/g.gguf"
    "$B/gguf-loader" convert "$m" -o "$W/c.gguf" --dtype $d --force >/dev/null 2>"$W/err" ||
        { echo "FAIL convert $ty -> $d on the CPU: $(tail -1 "$W/err")"; fail=1; continue; }
    "$B/gguf-loader" convert "$m" -o "$W/g.gguf" --dtype $d --force --device cuda >/dev/null 2>"$W/err" ||
        { echo "FAIL convert $ty -> $d on the GPU: $(tail -1 "$W/err")"; fail=1; continue; }
    if cmp -s "$W/c.gguf" "$W/g.gguf"; then converted=$((converted + 1)); else echo "FAIL convert $ty -> $d"; fail=1; fi
done
echo "$converted types converted the same on the GPU as on the CPU (one output each)"
for d in f16 bf16 f32; do
    rm -f "$W/c.gguf" "$W/g.gguf"
    "$B/gguf-loader" convert "$W/smollm2-q4_1.gguf" -o "$W/c.gguf" --dtype $d --force >/dev/null
    "$B/gguf-loader" convert "$W/smollm2-q4_1.gguf" -o "$W/g.gguf" --dtype $d --force --device cuda >/dev/null
    check "convert smollm2-shaped q4_1 -> $d" cmp "$W/c.gguf" "$W/g.gguf"
done

step "the forward pass on the GPU against the CPU's; the stability check on the GPU"
skip=(); [ "${REHEARSAL:-0}" = 1 ] && skip=(--skip tinyllama)
check forward-tests env GGUF_LOADER_MODEL="$W/smollm2-q4_1.gguf" "$B/forward-tests" --test-threads 1 --nocapture "${skip[@]}"
# (8 tokens in a rehearsal: the stand-in's matrix products are slow.)
n_gen=64; [ "${REHEARSAL:-0}" = 1 ] && n_gen=8
for d in cpu cuda cuda-ggml; do
    args=(--device "${d%-ggml}")
    [ "$d" = cuda-ggml ] && args+=(--gpu-matmul ggml-order)
    "$B/gguf-loader" generate "$W/tinyllama-q4_0.gguf" --ids --tokens 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -n $n_gen "${args[@]}" >"$W/gen-$d.txt" ||
        { echo "FAIL generate on $d"; fail=1; }
done
for d in cuda cuda-ggml; do
    cmp -s "$W/gen-cpu.txt" "$W/gen-$d.txt" && echo "the same $n_gen token ids on cpu and $d" ||
        echo "the token ids differ between cpu and $d (near ties may differ: random weights)"
done

step "cuBLAS on a loaded weight"
check cublas "$B/cuda-cublas" "$W/smollm2-q4_1.gguf"

step "lazy on the GPU (time to first layer) against the eager load"
check "load --lazy" "$B/gguf-loader" load "$W/tinyllama-q4_0.gguf" --device cuda --lazy
check load "$B/gguf-loader" load "$W/tinyllama-q4_0.gguf" --device cuda
check "load --dtype f32" "$B/gguf-loader" load "$W/tinyllama-q4_0.gguf" --device cuda --dtype f32

step "the Python package on the GPU (where this Python has numpy)"
if python3 -c "import numpy" 2>/dev/null; then
    if python3 -m pip install --quiet --no-deps --no-index --target "$W/py" "$B"/python/gguf_loader-*.whl; then
        check python env PYTHONPATH="$W/py" PYTHONUNBUFFERED=1 N_GEN="$n_gen" python3 "$B/python/gpu-python-check.py" \
            "$W/smollm2-q4_1.gguf" "$W/tinyllama-q4_0.gguf"
    else
        echo "FAIL python: the wheel did not install"
        fail=1
    fi
else
    echo "python3 with numpy: not here; the Python GPU check is owed"
fi

step benchmarks
models=("$W/tinyllama-q4_0.gguf")
if [ "${QUICK:-0}" != 1 ]; then
    "$B/gguf-loader" synth --preset llama2-7b --type q4_k -o "$W/llama2-7b-q4_k.gguf" >/dev/null
    models+=("$W/llama2-7b-q4_k.gguf")
fi
quick=(); [ "${QUICK:-0}" = 1 ] && quick=(--quick)
check cuda-bench "$B/cuda-bench" "${quick[@]}" "${models[@]}"

# Whether `verify --device cuda` would pay (issue #11): a GPU verify must
# first read every byte on the host (into the pinned ring) or have the GPU
# read the registered mapping over PCIe; the CPU's scan is timed here
# against one read of the same bytes (dd, one thread) and the pinned rate
# printed above.
step "verify on this host's CPU against one read of the same bytes (does a GPU verify pay?)"
for m in "${models[@]}"; do
    cat "$m" >/dev/null
    for _ in 1 2 3; do
        s=$(date +%s%N); "$B/gguf-loader" verify "$m" >/dev/null; e=$(date +%s%N)
        s2=$(date +%s%N); dd if="$m" of=/dev/null bs=16M 2>/dev/null; e2=$(date +%s%N)
        echo "$(basename "$m") ($(stat -c %s "$m") bytes): verify $(( (e - s) / 1000000 )) ms, one read $(( (e2 - s2) / 1000000 )) ms"
    done
done

step "CPU decode on this host (issue #13): every type, one thread and all threads, f16 out, against memcpy"
if [ "${REHEARSAL:-0}" = 1 ]; then
    echo "(a rehearsal: not run)"
    step result
    if [ $fail = 0 ]; then echo "ALL PASSED"; else echo "SOME CHECKS FAILED"; fi
    exit $fail
fi
grep -q avx512f /proc/cpuinfo && echo "AVX-512: present (AVX-512 kernels: the K-quants, the i-quants with grids, F32 -> f16 and bf16; measured against AVX2 below)" || echo "AVX-512: absent"
for ty in q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s iq1_s iq1_m \
    iq4_nl iq4_xs tq1_0 tq2_0 mxfp4 nvfp4 q1_0 q2_0 f32 f16 bf16; do
    m=$W/smol-$ty.gguf
    "$B/gguf-loader" synth --preset smollm2-135m --type "$ty" -o "$m" >/dev/null 2>&1 || continue
    echo "### $ty"
    "$B/gguf-loader" bench "$m" --threads "$(nproc)"
    rm -f "$m"
done

# Whether AVX-512 pays on this host (issue #13): the types with AVX-512
# kernels (F32 to f16 and to bf16), with GGUF_LOADER_SIMD=avx2 (the same
# binary kept to AVX2) and without, one thread and all threads.
if grep -q avx512f /proc/cpuinfo; then
    step "AVX-512 against AVX2 on this host (issue #13)"
    for ty in q2_k q3_k q4_k q5_k q6_k iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s f32; do
        m=$W/smol-$ty.gguf
        "$B/gguf-loader" synth --preset smollm2-135m --type "$ty" -o "$m" >/dev/null 2>&1 || continue
        dtypes=f16
        [ "$ty" = f32 ] && dtypes="f16 bf16"
        T=$(echo "$ty" | tr a-z A-Z)
        for dtype in $dtypes; do
            for cap in avx2 widest avx2 widest; do
                echo "$ty -> $dtype, $cap: $(GGUF_LOADER_SIMD=$cap "$B/gguf-loader" bench "$m" --dtype "$dtype" --threads "$(nproc)" | awk -v t="$T" '$1 == t')"
            done
        done
        rm -f "$m"
    done
fi

step "result"
if [ $fail = 0 ]; then echo "ALL PASSED"; else echo "SOME CHECKS FAILED"; fi
exit $fail
