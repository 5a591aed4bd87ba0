//! The CUDA decode kernels, compiled as host C++ and run on an emulated
//! grid, against the CPU path (`gguf_loader::dequantize_into`) bit for bit,
//! for every type to f32, f16 and bf16: golden vectors, random blocks with
//! special scales (0, negative, subnormal, NaN, ±Inf), plain types with
//! tails, and every tensor of the real models.
//!
//! One allowance: where the CPU's value is a NaN made by arithmetic (a
//! quantized type whose scale is NaN or infinite), the kernel's must be a
//! NaN, not the same NaN (a GPU makes the canonical NaN 0x7fffffff where x86
//! propagates a payload). Plain conversions (F32, F16, BF16, F64, integers)
//! must match every bit, NaN payloads included.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;

use common::Lcg;
use gguf_loader::internals::blocks::{scale_fields, ScaleEnc};
use gguf_loader::internals::{cuda_kernels, fp4};
use gguf_loader::{bf16, dequantize_into, f16, Element, ElementKind, GgmlType, MmapGGUFLoader};
use gguf_loader_cuda_host::{decode_with, kernel_decls, kernel_symbols, Launch};

const KINDS: [ElementKind; 3] = [ElementKind::F32, ElementKind::F16, ElementKind::BF16];

/// The plain number types: decoded by conversion alone, so every bit counts.
fn is_plain(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64)
}

/// An output float seen as bits.
trait Out: Element {
    /// What the output is filled with before a kernel runs.
    const FILL: Self;
    fn bits(self) -> u32;
    fn nan(self) -> bool;
}

impl Out for f32 {
    const FILL: f32 = f32::from_bits(0x7fc0_dead);
    fn bits(self) -> u32 {
        self.to_bits()
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl Out for f16 {
    const FILL: f16 = f16::from_bits(0x7e55);
    fn bits(self) -> u32 {
        u32::from(self.to_bits())
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl Out for bf16 {
    const FILL: bf16 = bf16::from_bits(0x7fd5);
    fn bits(self) -> u32 {
        u32::from(self.to_bits())
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

/// Asserts `got` is `want` bit for bit (any NaN for a computed NaN of a
/// quantized type), naming the first difference.
fn assert_same<T: Out>(what: &str, ty: GgmlType, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bs = ty.block_size() as usize;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.bits() == w.bits() || (!is_plain(ty) && w.nan() && g.nan());
        assert!(
            same,
            "{what}: element {i} (block {}, value {}): got {g:?} ({:#x}), want {w:?} ({:#x})",
            i / bs,
            i % bs,
            g.bits(),
            w.bits()
        );
    }
}

/// Decodes `src` with the kernel (on `launch`) and with the CPU path, as `T`,
/// and compares; returns the kernel's output.
fn check_kind<T: Out>(what: &str, ty: GgmlType, src: &[u8], launch: Launch) -> Vec<T> {
    let n = src.len() / ty.type_size() as usize * ty.block_size() as usize;
    let mut want = vec![T::default(); n];
    dequantize_into(ty, src, &mut want).expect("CPU decode");
    let mut got = vec![T::FILL; n];
    decode_with(ty, src, &mut got, launch)
        .unwrap_or_else(|e| panic!("{what} {}: {e}", T::KIND.name()));
    assert_same(&format!("{what} {}", T::KIND.name()), ty, &got, &want);
    got
}

/// [`check_kind`] for f32, f16 and bf16; returns the f32 output.
fn check(what: &str, ty: GgmlType, src: &[u8], launch: Launch) -> Vec<f32> {
    let got = check_kind::<f32>(what, ty, src, launch);
    check_kind::<f16>(what, ty, src, launch);
    check_kind::<bf16>(what, ty, src, launch);
    got
}

fn lower(ty: GgmlType) -> String {
    ty.name().to_ascii_lowercase()
}

#[test]
fn kernel_name_is_the_abi_symbol() {
    assert_eq!(
        cuda_kernels::kernel_name(GgmlType::Q4_0, ElementKind::F16),
        "gl_q4_0_to_f16"
    );
    assert_eq!(
        cuda_kernels::kernel_name(GgmlType::IQ2_XXS, ElementKind::BF16),
        "gl_iq2_xxs_to_bf16"
    );
    assert_eq!(
        cuda_kernels::kernel_name(GgmlType::F32, ElementKind::F32),
        "gl_f32_to_f32"
    );
    assert_eq!(
        cuda_kernels::kernel_name(GgmlType::MXFP4, ElementKind::F32),
        "gl_mxfp4_to_f32"
    );
}

/// The source defines exactly one kernel per type and output, with the
/// ABI's parameters, and this crate's table holds them all.
#[test]
fn source_has_a_kernel_for_every_type_and_output() {
    let source = cuda_kernels::source();
    let decls = kernel_decls(&source);
    let mut seen = HashSet::new();
    for d in &decls {
        assert!(seen.insert(d.name.as_str()), "{} defined twice", d.name);
    }
    let symbols: HashSet<&str> = kernel_symbols().collect();
    for ty in GgmlType::ALL {
        for kind in KINDS {
            let name = cuda_kernels::kernel_name(ty, kind);
            let d = decls
                .iter()
                .find(|d| d.name == name)
                .unwrap_or_else(|| panic!("no kernel {name} in the source"));
            let out = match kind {
                ElementKind::F32 => "float",
                ElementKind::F16 | ElementKind::BF16 => "unsigned short",
            };
            assert_eq!(
                d.params,
                format!(
                    "const unsigned char* __restrict__ src, {out}* __restrict__ dst, \
                     unsigned long long n_blocks"
                ),
                "{name}: parameters"
            );
            assert!(symbols.contains(name.as_str()), "{name} not compiled");
        }
    }
    assert_eq!(
        decls.len(),
        GgmlType::ALL.len() * KINDS.len(),
        "extra kernels"
    );
}

/// `source()` is the NVRTC prelude and the files in their order, and the
/// files include nothing NVRTC would have to find (only the host build's
/// standard headers, and each other outside the one translation unit).
#[test]
fn source_is_the_files_in_order_and_self_contained() {
    let names: Vec<&str> = cuda_kernels::SOURCES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "common.cuh",
            "tables.cuh",
            "legacy.cu",
            "kquants.cu",
            "iquants.cu",
            "ternary.cu",
            "fp4.cu",
            "float.cu"
        ]
    );
    let source = cuda_kernels::source();
    let mut rest = source
        .strip_prefix(cuda_kernels::NVRTC_PRELUDE)
        .expect("prelude first");
    assert_eq!(cuda_kernels::NVRTC_PRELUDE, "#define GL_NVRTC 1\n");
    for (name, text) in cuda_kernels::SOURCES {
        rest = rest
            .strip_prefix(text)
            .unwrap_or_else(|| panic!("{name} out of place"))
            .trim_start_matches('\n');
    }
    assert!(rest.is_empty());
    for (name, text) in cuda_kernels::SOURCES {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(what) = line.trim_start().strip_prefix("#include") else {
                continue;
            };
            let what = what.trim();
            if what.starts_with('"') {
                assert_eq!(
                    lines[i - 1].trim(),
                    "#if !defined(GL_NVRTC) && !defined(GL_HOST)",
                    "{name}:{}: an include outside the standalone guard",
                    i + 1
                );
            } else {
                assert!(
                    name == "common.cuh" && ["<cstdint>", "<cstring>"].contains(&what),
                    "{name}:{}: includes {what}",
                    i + 1
                );
            }
        }
    }
}

/// The values of `static __device__ const <type> <name>[n] = { ... };`.
fn table(source: &str, name: &str) -> Vec<i64> {
    let head = format!(" {name}[");
    let at = source
        .find(&head)
        .unwrap_or_else(|| panic!("no table {name}"));
    let body = &source[at..];
    let open = body.find('{').expect("{");
    let close = body.find('}').expect("}");
    body[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let v = v.trim_end_matches(['u', 'l']);
            match v.strip_prefix("0x") {
                Some(h) => i64::from_str_radix(h, 16).expect("hex"),
                None => v.parse().expect("decimal"),
            }
        })
        .collect()
}

/// The fp4 tables the script derives from the formats' definitions are the
/// CPU's: `ue4m3_to_fp32` for every byte, and the MXFP4 values (decoded by
/// the CPU with a scale of 1).
#[test]
fn fp4_tables_are_the_cpus() {
    let source = cuda_kernels::source();
    let ue4m3 = table(&source, "gl_ue4m3_half");
    assert_eq!(ue4m3.len(), 256);
    for (x, &bits) in ue4m3.iter().enumerate() {
        let want = fp4::ue4m3_to_fp32(x as u8).to_bits();
        assert_eq!(bits, i64::from(want), "ue4m3 {x:#04x}");
    }
    let kv = table(&source, "gl_kvalues_mxfp4");
    // e = 128: d = 2^0; codes 0..16 in the low nibbles, then again high.
    let mut block = vec![128u8];
    block.extend((0..16u8).map(|c| c | (c << 4)));
    let mut y = [0f32; 32];
    fp4::dequantize_row_mxfp4(&block, &mut y);
    assert_eq!(kv.len(), 16);
    for c in 0..16 {
        assert_eq!(kv[c] as f32, y[c], "kvalues_mxfp4[{c}]");
        assert_eq!(kv[c] as f32, y[c + 16], "kvalues_mxfp4[{c}]");
    }
}

/// Every golden vector decodes as the CPU decodes it (and the f32 output is
/// the golden one), on a grid of 3 blocks of 256 threads.
#[test]
fn golden_vectors_decode_as_on_the_cpu() {
    for ty in GgmlType::ALL {
        let name = lower(ty);
        let g = common::golden(&name);
        let got = check(
            &name,
            ty,
            &g.raw,
            Launch {
                grid: 3,
                block: 256,
            },
        );
        assert_same(&format!("{name} golden"), ty, &got, &g.expected);
    }
}

/// An f32 scale (Q8_K), likewise.
fn scale_f32(rng: &mut Lcg) -> u32 {
    let r = rng.next_u32();
    match r % 16 {
        0 => 0,
        1 => 0x8000_0000 | (rng.next_u32() & 0x3fff_ffff),
        2 => rng.next_u32() & 0x007f_ffff,
        3 => 0x7f80_0001 | rng.next_u32(),
        4 => 0xff80_0000,
        5 => 0x7f80_0000,
        6 => rng.next_u32(),
        _ => ((r >> 8) as f32 / (1u32 << 24) as f32 * 0.1).to_bits(),
    }
}

/// `n` random blocks of `ty` whose scale fields hold special values.
fn random_blocks(rng: &mut Lcg, ty: GgmlType, n: usize) -> Vec<u8> {
    let ts = ty.type_size() as usize;
    let mut v = rng.bytes(n * ts);
    for b in v.chunks_exact_mut(ts) {
        for f in scale_fields(ty) {
            let field = f.bytes_mut(b);
            match f.enc {
                ScaleEnc::F16 => {
                    field.copy_from_slice(&common::special_f16_scale(rng).to_le_bytes())
                }
                ScaleEnc::F32 => field.copy_from_slice(&scale_f32(rng).to_le_bytes()),
                ScaleEnc::E8M0 => {
                    field[0] = [0, 1, 2, 127, 128, 254, 255, rng.byte()][rng.below(8)]
                }
                ScaleEnc::UE4M3 => {
                    for x in field.iter_mut() {
                        *x = [0, 0x7f, 0x80, 0xff, 1, 8, rng.byte(), rng.byte()][rng.below(8)];
                    }
                }
                ScaleEnc::Iq1mScale => {
                    // The f16's nibbles go to the top of the four words.
                    let s = common::special_f16_scale(rng);
                    for k in 0..4 {
                        field[2 * k + 1] =
                            (field[2 * k + 1] & 0x0f) | (((s >> (4 * k)) as u8) << 4);
                    }
                }
            }
        }
    }
    v
}

/// The launches the random tests run on: one thread block smaller than the
/// work, odd grids (tails and strides), the ABI's 256 threads, and the CUDA
/// host side's own launch.
fn launches(values: usize) -> [Launch; 4] {
    [
        Launch { grid: 1, block: 32 },
        Launch {
            grid: 3,
            block: 256,
        },
        Launch { grid: 7, block: 96 },
        Launch::for_values(values),
    ]
}

#[test]
fn random_blocks_with_special_scales_decode_as_on_the_cpu() {
    let mut rng = Lcg(0x5eed_c0da);
    for ty in GgmlType::ALL.into_iter().filter(|&t| !is_plain(t)) {
        for n in [1usize, 67, 300] {
            let src = random_blocks(&mut rng, ty, n);
            let values = n * ty.block_size() as usize;
            for launch in launches(values) {
                check(&format!("{} x{n} {launch:?}", lower(ty)), ty, &src, launch);
            }
        }
    }
}

/// Plain values: random bits with NaNs (quiet and signaling, with
/// payloads), infinities, zeros and subnormals, in runs whose lengths leave
/// every tail of a unit of 8.
#[test]
fn plain_types_decode_as_on_the_cpu_with_tails() {
    let mut rng = Lcg(0xf10a7);
    let specials: [u64; 10] = [
        0,
        u64::MAX,
        0x7ff0_0000_0000_0000,
        0x7ff0_0000_0000_0001,
        0x7ff8_dead_beef_0001,
        0xfff4_0000_0000_0000,
        0x0000_0000_0000_0001,
        0x8000_0000_0000_0000,
        0x47ef_ffff_e000_0000,
        0x36a0_0000_0000_0000,
    ];
    let specials32: [u32; 8] = [
        0x7f80_0001,
        0xff80_0000,
        0x7fc0_1234,
        0x0000_0001,
        0x8000_0000,
        0x477f_f000,
        0x3380_0000,
        0x7f7f_ffff,
    ];
    let specials16: [u16; 8] = [
        0x7c01, 0xfe00, 0x7d55, 0x0001, 0x8000, 0x7f81, 0xff80, 0x7fbf,
    ];
    for ty in GgmlType::ALL.into_iter().filter(|&t| is_plain(t)) {
        let size = ty.type_size() as usize;
        for n in (0..=17).chain([255, 1001]) {
            let mut src = rng.bytes(n * size);
            for e in src.chunks_exact_mut(size) {
                if rng.below(3) != 0 {
                    continue;
                }
                match size {
                    8 => e.copy_from_slice(&specials[rng.below(10)].to_le_bytes()),
                    4 => e.copy_from_slice(&specials32[rng.below(8)].to_le_bytes()),
                    2 => e.copy_from_slice(&specials16[rng.below(8)].to_le_bytes()),
                    _ => {}
                }
            }
            for launch in launches(n) {
                check(&format!("{} x{n} {launch:?}", lower(ty)), ty, &src, launch);
            }
        }
    }
}

/// Every tensor of the real models decodes as on the CPU, with the CUDA
/// host side's launch.
#[test]
fn real_models_decode_as_on_the_cpu() {
    for model in common::real_models() {
        let loader = MmapGGUFLoader::new(&model).expect("open the model");
        for info in loader.tensors() {
            let data = loader.get_tensor_data(info.name).expect("tensor data");
            let launch = Launch::for_values(info.n_elements as usize);
            check(info.name, info.ty, data, launch);
        }
    }
}
