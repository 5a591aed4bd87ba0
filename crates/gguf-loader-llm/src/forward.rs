//! The forward pass: llama and gemma3 over `Model<f16>` weights.
