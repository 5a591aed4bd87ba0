//! Times `MmapGGUFLoader::new` on a file: `cargo run --release --example open_time FILE [N]`.
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: open_time FILE [N]")?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let l = gguf_loader::MmapGGUFLoader::new(&path)?;
        std::hint::black_box(l.tensor_count());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "open {path}: median {:.3} ms, min {:.3} ms over {n}",
        times[n / 2],
        times[0]
    );
    Ok(())
}
