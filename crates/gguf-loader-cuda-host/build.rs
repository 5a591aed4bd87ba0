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

    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file(&cpp)
        .opt_level(2)
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("gl_kernels_host");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/parse.rs");
}
