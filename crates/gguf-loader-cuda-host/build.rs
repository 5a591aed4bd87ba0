//! Compiles the CUDA decode kernels as one host C++ translation unit: the
//! text NVRTC compiles (`cuda_kernels::source()`), with `GL_HOST` defined
//! instead of `GL_NVRTC`, strict IEEE arithmetic (no contraction, no fast
//! math), and writes the Rust table of the kernels' symbols.

use std::fmt::Write as _;
use std::path::PathBuf;

use gguf_loader::internals::cuda_kernels;

#[path = "src/parse.rs"]
mod parse;

fn main() {
    let source = cuda_kernels::source();
    let body = source
        .strip_prefix(cuda_kernels::NVRTC_PRELUDE)
        .expect("cuda_kernels::source() starts with its NVRTC prelude");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cpp = out.join("gl_kernels_host.cpp");
    std::fs::write(&cpp, format!("#define GL_HOST 1\n{body}")).expect("write the host C++");

    let kernels = parse::kernel_decls(&source);
    let mut rs = String::from("extern \"C\" {\n");
    for k in &kernels {
        writeln!(
            rs,
            "    fn {}(src: *const u8, dst: *mut ::core::ffi::c_void, n_blocks: u64);",
            k.name
        )
        .unwrap();
    }
    rs.push_str("}\n\n/// Every kernel of the source: (symbol, function).\n");
    rs.push_str("pub(crate) static KERNELS: &[(&str, Kernel)] = &[\n");
    for k in &kernels {
        writeln!(rs, "    ({:?}, {} as Kernel),", k.name, k.name).unwrap();
    }
    rs.push_str("];\n");
    std::fs::write(out.join("kernels.rs"), rs).expect("write the kernel table");

    strict_cpp(&cpp).compile("gl_kernels_host");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/parse.rs");
    forward_kernels(&out);
}

/// The forward pass's kernels (`gguf-loader-llm`'s `src/forward/kernels.cu`,
/// the text its GPU side hands NVRTC) as host C++: `src/forward_host.h`
/// (thread blocks as fibers), the kernels in a namespace of their own (their
/// names are plain C words: `add`, `rope`), each `extern __shared__` array
/// made a pointer to the launch's dynamic shared memory, and
/// `gl_fwd_launch`, which runs a kernel by name with cuLaunchKernel-style
/// arguments.
fn forward_kernels(out: &std::path::Path) {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let cu = dir.join("../gguf-loader-llm/src/forward/kernels.cu");
    let header = dir.join("src/forward_host.h");
    let source = std::fs::read_to_string(&cu).expect("read gguf-loader-llm's forward kernels");
    const HEAD: &str = "extern \"C\" __global__ void ";
    let mut names = Vec::new();
    let mut body = String::new();
    for line in source.lines() {
        let line = match line.strip_prefix(HEAD) {
            Some(rest) => {
                let name = rest.split('(').next().unwrap_or_default();
                assert!(
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "a kernel line without a name: {line}"
                );
                names.push(name.to_string());
                format!("__global__ void {rest}")
            }
            None => match line.trim_start().strip_prefix("extern __shared__ ") {
                // `extern __shared__ float sc[];` -> `float* sc = (float*)...;`
                Some(decl) => {
                    let decl = decl.trim_end().trim_end_matches(';').trim_end();
                    let decl = decl
                        .strip_suffix("[]")
                        .expect("extern __shared__ T name[];");
                    let (ty, name) = decl.rsplit_once(' ').expect("extern __shared__ T name[];");
                    format!("    {ty}* {name} = static_cast<{ty}*>(gl_sim::dyn_shared());")
                }
                None => line.to_string(),
            },
        };
        body.push_str(&line);
        body.push('\n');
    }
    assert!(!names.is_empty(), "no kernels in {}", cu.display());
    let mut cpp = format!(
        "#define GL_HOST 1\n#include \"{}\"\nnamespace glfwd {{\nusing std::isfinite;\nusing std::max;\nusing std::min;\n{body}}}  // namespace glfwd\n\n",
        header.display()
    );
    cpp.push_str(
        "// Runs kernel `name`: 0, or a gl_sim error (NO_KERNEL for an unknown name).\n\
         extern \"C\" int gl_fwd_launch(const char* name, unsigned grid, unsigned block,\n\
         \x20                            unsigned long long shared, int order, void** params) {\n",
    );
    for n in &names {
        writeln!(
            cpp,
            "    if (std::strcmp(name, \"{n}\") == 0) return gl_sim::launch(glfwd::{n}, grid, block, shared, order, params);"
        )
        .unwrap();
    }
    cpp.push_str("    return gl_sim::NO_KERNEL;\n}\n");
    let mut list = String::from("/// The forward kernels' names, in source order.\npub static FORWARD_KERNELS: &[&str] = &[\n");
    for n in &names {
        writeln!(list, "    {n:?},").unwrap();
    }
    list.push_str("];\n");
    std::fs::write(out.join("forward_kernels.rs"), list).expect("write the forward kernel list");
    let file = out.join("gl_forward_host.cpp");
    std::fs::write(&file, cpp).expect("write the forward host C++");
    strict_cpp(&file)
        // CUDA's idiom `threadIdx.x < k` (unsigned against int).
        .flag("-Wno-sign-compare")
        .compile("gl_forward_host");
    println!("cargo:rerun-if-changed={}", cu.display());
    println!("cargo:rerun-if-changed={}", header.display());
}

/// A C++17 build of `file` with strict IEEE arithmetic (no contraction, no
/// fast math: each operation rounded as the kernels' PTX rounds it) and
/// every warning an error.
fn strict_cpp(file: &std::path::Path) -> cc::Build {
    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .file(file)
        .opt_level(2)
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true);
    b
}
