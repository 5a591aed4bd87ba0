//! `gguf-loader synth`: the output is written beside its target and renamed
//! into place, so that a process reading the old file keeps it whole, an
//! existing file needs `--force`, and a failed run leaves nothing behind.

mod support;

use std::path::Path;

use gguf_loader::MmapGGUFLoader;
use support::{cli, listing, run, Ran, Unwritable};

fn synth(out: &Path, seed: u64, args: &[&str]) -> Ran {
    run(cli()
        .args(["synth", "--preset", "tiny-test", "--type", "q8_0", "--seed"])
        .arg(seed.to_string())
        .arg("-o")
        .arg(out)
        .args(args))
}

#[test]
fn a_file_being_read_keeps_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    synth(&out, 1, &[]).ok();
    let old = MmapGGUFLoader::new(&out).unwrap();
    let name = old.tensor_names()[0].to_string();
    let before = old.get_tensor_data(&name).unwrap().to_vec();
    // Truncating the mapped file in place would make these pages SIGBUS.
    // Windows replaces no file in use: a clean error, the file as it was.
    if !cfg!(unix) {
        let err = synth(&out, 2, &["--force"]).err().to_string();
        assert!(err.contains("cannot rename into place"), "{err}");
        assert_eq!(old.get_tensor_data(&name).unwrap(), &before[..]);
        assert_eq!(listing(dir.path()), ["m.gguf"]);
        return;
    }
    let summary = synth(&out, 2, &["--force"]).ok().to_string();
    assert_eq!(old.get_tensor_data(&name).unwrap(), &before[..]);
    let new = MmapGGUFLoader::new(&out).unwrap();
    assert_ne!(
        new.get_tensor_data(&name).unwrap(),
        &before[..],
        "seed 2 differs"
    );
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.starts_with(&format!("wrote {}: tiny-test", out.display())),
        "{summary}"
    );
    assert_eq!(listing(dir.path()), ["m.gguf"]);
}

#[test]
fn an_existing_file_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    std::fs::write(&out, b"precious").unwrap();
    let err = synth(&out, 1, &[]).err().to_string();
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let d = dir.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let err = synth(&d, 1, &["--force"]).err().to_string();
    assert!(err.contains("is a directory"), "{err}");
    assert_eq!(listing(dir.path()), ["d", "m.gguf"]);
}

#[test]
fn unwritable_outputs_are_named_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/m.gguf");
    let err = synth(&missing, 1, &[]).err().to_string();
    assert!(
        err.contains(&*missing.to_string_lossy()) && err.contains(support::NO_SUCH_FILE),
        "{err}"
    );
    if let Some(ro) = Unwritable::new() {
        let out = ro.path().join("m.gguf");
        let err = synth(&out, 1, &[]).err().to_string();
        assert!(
            err.contains(&*out.to_string_lossy()) && err.contains("cannot create"),
            "{err}"
        );
        assert!(listing(&ro.path()).is_empty());
    }
    // An unknown preset fails before the output is touched.
    let out = dir.path().join("m.gguf");
    let r = run(cli()
        .args(["synth", "--preset", "nope", "--type", "q8_0", "-o"])
        .arg(&out));
    assert!(r.err().contains("unknown preset"));
    assert!(listing(dir.path()).is_empty());
    // An unknown type is said with the known ones.
    let r = run(cli()
        .args(["synth", "--preset", "tiny-test", "--type", "q9", "-o"])
        .arg(&out));
    let err = r.err();
    assert!(
        err.contains("unknown tensor type 'q9' (known: f32, f16, q4_0,") && err.contains("nvfp4"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
    // A GGUF is never written under a safetensors name.
    for name in ["m.safetensors", "m.SafeTensors"] {
        let r = run(cli()
            .args(["synth", "--preset", "tiny-test", "--type", "q8_0", "-o"])
            .arg(dir.path().join(name)));
        assert!(r.err().contains("synth writes a GGUF"), "{}", r.stderr);
    }
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_full_disk_fails_cleanly() {
    let Some(small) = support::Tmpfs::mount("size=64k") else {
        return;
    };
    let out = small.path().join("m.gguf");
    let err = run(cli()
        .args(["synth", "--preset", "smollm2-135m", "--type", "q4_0", "-o"])
        .arg(&out))
    .err()
    .to_string();
    assert!(
        err.contains(&*out.to_string_lossy()) && err.contains("No space left"),
        "{err}"
    );
    assert!(listing(&small.path()).is_empty());
}
