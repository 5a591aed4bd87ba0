//! The README's example is `examples/readme.rs`, word for word, and it runs
//! on both real models (SmolLM2, a llama; Gemma-3, whose keys are
//! `gemma3.*`).

mod common;

#[path = "../examples/readme.rs"]
#[allow(dead_code)]
mod readme;

#[test]
fn readme_shows_the_example_word_for_word() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rust block in README.md");
    let example =
        std::fs::read_to_string(common::repo_root().join("crates/gguf-loader/examples/readme.rs"))
            .unwrap();
    assert_eq!(
        block, example,
        "README.md's example differs from examples/readme.rs"
    );
}

#[test]
fn the_example_runs_on_both_real_models() {
    for model in common::real_models() {
        readme::run(model.to_str().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    }
}
