//! Reading the kernel list out of the CUDA source (shared by `build.rs`,
//! which builds the table of extern symbols from it, and the tests).

/// One `extern "C" __global__ void gl_…(…)` definition of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDecl {
    /// The symbol, e.g. `gl_q4_0_to_f16`.
    pub name: String,
    /// The parameter list between the parentheses, as written.
    pub params: String,
}

/// Every line of `source` that starts with `extern "C" __global__ void `,
/// then an identifier and a parenthesized parameter list on the same line:
/// the kernel definitions, in order. Other lines (comments quoting the ABI)
/// are left out.
pub fn kernel_decls(source: &str) -> Vec<KernelDecl> {
    const HEAD: &str = "extern \"C\" __global__ void ";
    source
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(HEAD)?;
            let (name, rest) = rest.split_once('(')?;
            let (params, _) = rest.split_once(')')?;
            let ident =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ident.then(|| KernelDecl {
                name: name.to_string(),
                params: params.trim().to_string(),
            })
        })
        .collect()
}
