//! A loaded weight matrix used in place by cuBLAS: the model is loaded onto
//! the GPU as f16, one weight's cudarc `CudaSlice<f16>` goes straight into
//! a half-precision GEMM (f32 accumulation) on the loader's own stream, and
//! the product is checked against the same product on the CPU.
//!
//!     cargo run --release --features cuda --example cuda_cublas -- MODEL.gguf [TENSOR]
//!
//! Needs the `cuda` feature, a GPU, and libcublas on the library path.

use gguf_loader::cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use gguf_loader::{f16, Device, MmapGGUFLoader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: cuda_cublas MODEL.gguf [TENSOR]")?;
    let name = args
        .next()
        .unwrap_or_else(|| "blk.0.ffn_down.weight".to_string());
    let loader = MmapGGUFLoader::new(&path)?;
    let model = loader.load_f16_model(Device::Cuda(0))?;
    let w = model
        .tensor(&name)
        .ok_or_else(|| format!("{path}: no tensor {name}"))?;
    let shape = w.shape();
    let [rows, cols] = shape[..] else {
        return Err(format!("{name} is not a matrix: {shape:?}").into());
    };
    // The weight stays where the loader put it: no copy.
    let w_dev = w.cuda_slice().ok_or("the tensor is not on the GPU")?;
    let stream = w_dev.stream().clone();

    // X: `cols` × `batch`, column-major (each column one input vector).
    let batch = 8usize;
    let x: Vec<f16> = (0..cols * batch)
        .map(|i| f16::from_f32(((i * 7919 % 1000) as f32 / 500.0) - 1.0))
        .collect();
    let x_dev = stream.clone_htod(&x)?;
    let mut y_dev = stream.alloc_zeros::<f16>(rows * batch)?;

    // Y (rows × batch, column-major) = W · X. W is row-major rows × cols,
    // which column-major reads as its transpose (cols × rows, ld = cols).
    let blas = CudaBlas::new(stream.clone())?;
    let cfg = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: rows as i32,
        n: batch as i32,
        k: cols as i32,
        alpha: f16::ONE,
        lda: cols as i32,
        ldb: cols as i32,
        beta: f16::ZERO,
        ldc: rows as i32,
    };
    // SAFETY: the buffers hold exactly the sizes the configuration names.
    unsafe { blas.gemm(cfg, w_dev, &x_dev, &mut y_dev)? };
    let y = stream.clone_dtoh(&y_dev)?;

    // The same product on the CPU, from the CPU's decode of the weight.
    let w_cpu = loader.load_tensor_f16(&name, Device::Cpu)?;
    let wv = w_cpu.data();
    let mut worst = 0f32;
    for b in 0..batch {
        for r in 0..rows {
            let mut acc = 0f32;
            for c in 0..cols {
                acc += wv[r * cols + c].to_f32() * x[b * cols + c].to_f32();
            }
            let got = y[b * rows + r].to_f32();
            let err = (got - acc).abs() / acc.abs().max(1.0);
            worst = worst.max(err);
        }
    }
    println!(
        "{name}: [{rows}, {cols}] f16 on {} · X[{cols}, {batch}] with cuBLAS: worst relative error against the CPU {worst:.2e}",
        w.device()
    );
    if worst > 2e-2 {
        return Err(format!("the GPU product differs from the CPU's (worst {worst:.2e})").into());
    }
    println!("ok");
    Ok(())
}
