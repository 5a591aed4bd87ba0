//! `--device cuda` as a stranger tries it: where no GPU can be used (this
//! build has no `cuda` feature, or the machine no driver or GPU) `load` and
//! `convert` answer one line naming the device and `convert` leaves no
//! file; bad device names and ring sizes are refused by the parser. On a
//! machine with a GPU and a `cuda` build (scripts/gpu-check.sh), the GPU
//! conversion is the CPU's byte for byte, and the GPU's perplexity near
//! the CPU's.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use support::{cli, run};

/// Whether this binary can use GPU 0 (a `cuda` build on a machine with one).
fn gpu_works(model: &std::path::Path) -> bool {
    let r = run(cli()
        .arg("load")
        .arg(model)
        .args(["--device", "cuda", "--json"]));
    r.code == Some(0)
}

#[test]
fn load_and_convert_on_a_gpu_or_one_line_why_not() {
    let Some(model) = common::model_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    if gpu_works(&model) {
        for dtype in ["f16", "bf16", "f32"] {
            let cpu = dir.path().join(format!("cpu-{dtype}.gguf"));
            let gpu = dir.path().join(format!("gpu-{dtype}.gguf"));
            run(cli()
                .arg("convert")
                .arg(&model)
                .arg("-o")
                .arg(&cpu)
                .args(["--dtype", dtype]))
            .ok();
            run(cli()
                .arg("convert")
                .arg(&model)
                .arg("-o")
                .arg(&gpu)
                .args(["--dtype", dtype, "--device", "cuda:0"]))
            .ok();
            assert!(
                std::fs::read(&cpu).unwrap() == std::fs::read(&gpu).unwrap(),
                "{dtype}"
            );
        }
        let r = run(cli()
            .arg("load")
            .arg(&model)
            .args(["--device", "cuda", "--lazy"]));
        r.ok();
        // Perplexity on the GPU's forward pass: near the CPU's (cuBLAS sums
        // in its own order); its KL divergence from the CPU's
        // log-probabilities (written by the CPU's run) near 0.
        let base = dir.path().join("cpu.kld");
        let json = |r: support::Ran| -> serde_json::Value {
            serde_json::from_str(r.ok().trim_end()).unwrap()
        };
        let ppl = |device: &str| -> Vec<f64> {
            let mut c = cli();
            c.arg("perplexity")
                .arg(&model)
                .arg("-f")
                .arg(common::repo_root().join("LICENSE-APACHE"))
                .args(["--ctx", "64", "--chunks", "2", "--json", "--device", device]);
            if device == "cpu" {
                c.arg("--kl-divergence-base").arg(&base);
            }
            let v = json(run(&mut c));
            let chunks = v["chunk_ppl"].as_array().unwrap();
            chunks.iter().map(|x| x.as_f64().unwrap()).collect()
        };
        let (cpu, gpu) = (ppl("cpu"), ppl("cuda"));
        assert_eq!(cpu.len(), 2);
        for (c, g) in cpu.iter().zip(&gpu) {
            assert!((c - g).abs() / c < 1e-3, "CPU {cpu:?}, GPU {gpu:?}");
        }
        let v = json(run(cli()
            .arg("perplexity")
            .arg(&model)
            .arg("--kl-divergence-base")
            .arg(&base)
            .args(["--kl-divergence", "--json", "--device", "cuda"])));
        let (kld, top) = (
            v["kld"][0].as_f64().unwrap(),
            v["same_top"][0].as_f64().unwrap(),
        );
        assert!(kld.abs() < 1e-3 && top > 0.95, "{v}");
        return;
    }
    for args in [
        vec!["load", "--device", "cuda"],
        vec!["load", "--device", "cuda:3", "--lazy"],
        vec!["load", "--device", "cuda:0", "--json"],
    ] {
        let r = run(cli().arg(args[0]).arg(&model).args(&args[1..]));
        let e = r.err();
        assert!(e.contains("cuda:"), "{e}");
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let r = run(cli()
        .arg("perplexity")
        .arg(&model)
        .arg("-f")
        .arg(common::repo_root().join("LICENSE-APACHE"))
        .args(["--device", "cuda"]));
    assert!(r.err().contains("cuda:0"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let out = dir.path().join("x.gguf");
    let r = run(cli()
        .arg("convert")
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .args(["--device", "cuda"]));
    assert!(r.err().contains("cuda:0"));
    assert!(!out.exists());
    assert_eq!(
        support::listing(dir.path()),
        Vec::<String>::new(),
        "leftovers"
    );
}

#[test]
fn bad_devices_and_ring_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::tiny_model(dir.path());
    for args in [
        vec!["--device", "gpu"],
        vec!["--device", "cuda:"],
        vec!["--device", "cuda:-1"],
        vec!["--device", "cuda:99999999999999999999999"],
        vec!["--device", "cuda:+1"],
        vec!["--device", "CUDA"],
        vec!["--ring-mib", "100000"],
        vec!["--ring-mib", "-1"],
        vec!["--staging", "dma"],
    ] {
        let r = run(cli().arg("load").arg(&model).args(&args));
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    // The staging ring's settings are a GPU load's: on the CPU they would
    // be ignored, so they are refused.
    for args in [vec!["--staging", "pread"], vec!["--ring-mib", "8"]] {
        let r = run(cli().arg("load").arg(&model).args(&args));
        assert!(
            r.err()
                .contains("--staging and --ring-mib are for GPU loads"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // The GPU's matmul choice: an unknown one, and any on the CPU.
    for (args, says) in [
        (vec!["--gpu-matmul", "fast"], "possible values"),
        (
            vec!["--gpu-matmul", "ggml-order"],
            "--gpu-matmul is for a GPU",
        ),
    ] {
        let r = run(cli()
            .arg("generate")
            .arg(&model)
            .args(["--tokens", "1", "--ids"])
            .args(&args));
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}
