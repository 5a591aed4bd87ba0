use gguf_loader::{f16, load_model_f16, Device, LazyModel, MmapGGUFLoader, Prefetch};

pub fn run(path: &str) -> Result<(), gguf_loader::Error> {
    // Open: mmap + parse + full validation, in a millisecond or two.
    let loader = MmapGGUFLoader::new(path)?;
    let meta = loader.metadata();
    let arch = meta.architecture()?; // "llama", "gemma3", …
    let n_layers = meta.arch_u32("block_count")?; // `{arch}.block_count`
    let tokens = meta.get_str_array("tokenizer.ggml.tokens")?; // &str views into the file
    println!("{arch}: {n_layers} layers, {} tokens", tokens.len());

    // One tensor: its bytes (zero-copy, the same slice every call), or decoded.
    let bytes: &[u8] = loader.get_tensor_data("blk.0.attn_q.weight")?;
    let q = loader.load_tensor_f16("blk.0.attn_q.weight", Device::Cpu)?; // Tensor<f16>
    println!(
        "{} bytes -> shape {:?} (ne {:?})",
        bytes.len(),
        q.shape(),
        q.ne()
    );

    // Every tensor, decoded in parallel; then by layer.
    let model = loader.load_f16_model(Device::Cpu)?; // Model<f16>
    let norm = model.layer(0)?.get("attn_norm.weight"); // blk.0.attn_norm.weight
    println!(
        "{} tensors, {} layers, {norm:?}",
        model.len(),
        model.layer_count()
    );

    // Or lazily, layer by layer, the next one decoded while you use this one.
    let lazy = LazyModel::<f16>::open(path)?;
    for layer in lazy.layers(Prefetch::NextLayer) {
        let layer = layer?;
        assert!(layer.get("attn_q.weight").is_some());
    }

    let same = load_model_f16(path)?; // the one-call form
    assert_eq!(same.len(), model.len());
    Ok(())
}

fn main() -> Result<(), gguf_loader::Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "model.gguf".into());
    run(&path)
}
