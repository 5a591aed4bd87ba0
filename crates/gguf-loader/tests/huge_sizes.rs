//! Sizes declared by a file beyond memory give `Error::OutOfMemory` naming
//! the tensor and the bytes asked for, never an abort: a sparse file
//! declaring one F16 tensor of 5 x 10^10 elements aborted `load` in read
//! mode ("memory allocation of 100000000000 bytes failed"), and IQ1_S to
//! f32 multiplies the file's size by 20.5. The files are sparse
//! (`set_len`), so the tests use neither disk nor memory; sizes and a child
//! process with a bounded address space make sure that no allocation can
//! succeed, whatever the machine.

use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::process::Command;

use gguf_loader::MmapGGUFLoader;
use gguf_loader::{f16, Device, Element, Error, GgmlType, LazyModel, LoadMode, LoadOptions};

/// Writes a GGUF v3 header with one tensor `name` of `ty` and `dims`, then
/// extends the file (sparse) to hold its data. `None` when the filesystem
/// cannot hold a file that long.
fn sparse_model(dir: &Path, name: &str, ty: GgmlType, dims: &[u64]) -> Option<PathBuf> {
    let mut h = Vec::new();
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes()); // tensors
    h.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    let s = |h: &mut Vec<u8>, s: &str| {
        h.extend_from_slice(&(s.len() as u64).to_le_bytes());
        h.extend_from_slice(s.as_bytes());
    };
    s(&mut h, "general.architecture");
    h.extend_from_slice(&8u32.to_le_bytes()); // string
    s(&mut h, "llama");
    s(&mut h, name);
    h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        h.extend_from_slice(&d.to_le_bytes());
    }
    h.extend_from_slice(&ty.id().to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // offset
    let data_offset = (h.len() as u64).next_multiple_of(32);
    let n: u64 = dims.iter().product();
    let len = data_offset + ty.byte_size(n).unwrap();
    let path = dir.join(format!("{name}.gguf"));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&h).unwrap();
    match f.set_len(len) {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("skipped: a sparse file of {len} bytes: {e}");
            None
        }
    }
}

/// The one tensor, alone and as a whole model, cannot be decoded to `T`:
/// `Error::OutOfMemory` for `bytes`.
fn assert_loads_refused<T: Element>(loader: &MmapGGUFLoader, tensor: &str, bytes: u64) {
    let one = loader.load_tensor::<T>(tensor, Device::Cpu);
    assert_oom(one, tensor, bytes, "load_tensor");
    assert_oom(
        loader.load_model::<T>(Device::Cpu),
        tensor,
        bytes,
        "load_model",
    );
}

fn assert_oom<T: std::fmt::Debug>(r: Result<T, Error>, tensor: &str, bytes: u64, what: &str) {
    match r {
        Err(Error::OutOfMemory {
            tensor: t,
            bytes: b,
        }) => {
            assert_eq!((t.as_str(), b), (tensor, bytes), "{what}")
        }
        other => panic!("{what}: {other:?}"),
    }
}

/// Mapped: an IQ1_S tensor of about 14 TB decodes to about 320 TB of f32,
/// more than any process can address (2^47 bytes on x86-64, 2^48 on
/// aarch64, without an explicit hint): the output cannot be allocated.
#[test]
fn outputs_beyond_the_address_space_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [256 << 20, 300_000];
    let Some(path) = sparse_model(dir.path(), "iq1s", GgmlType::IQ1_S, &dims) else {
        return;
    };
    let n: u64 = dims.iter().product();
    let bytes = n * 4;
    assert!(bytes > 1 << 48);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    assert_loads_refused::<f32>(&loader, "iq1s", bytes);
    let lazy = LazyModel::<f32>::open(&path).unwrap();
    assert_oom(lazy.tensor("iq1s"), "iq1s", bytes, "lazy");
    let mut dst = [0f32; 4];
    assert!(matches!(
        loader.load_tensor_into("iq1s", &mut dst),
        Err(Error::Decode { .. })
    ));
}

#[cfg(unix)]
const CHILD: &str = "GGUF_LOADER_TEST_BOUNDED_CHILD";

/// Read mode, in a child process whose address space is bounded to 4 GiB
/// (so that no allocation of a terabyte can succeed, even where memory is
/// overcommitted): the read buffer, the output and a header that asks for
/// more than memory all give errors.
#[test]
fn read_mode_sizes_beyond_memory_fail_cleanly() {
    // On Unix, in a child process under `ulimit -v` (Windows commits what
    // it allocates: no allocation of these sizes succeeds there).
    #[cfg(unix)]
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
            .arg(exe)
            .args([
                "--exact",
                "read_mode_sizes_beyond_memory_fail_cleanly",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child: {:?}\n{text}", out.status);
        assert!(text.contains("1 passed"), "{text}");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    // The file, larger: one F16 tensor of 2^39 values (1 TiB).
    let dims = [1 << 20, 1 << 19];
    let Some(path) = sparse_model(dir.path(), "f16", GgmlType::F16, &dims) else {
        return;
    };
    let bytes = 1u64 << 40;
    let read = MmapGGUFLoader::open(&path, LoadMode::Read).unwrap();
    assert_oom(
        read.read_tensor_data("f16"),
        "f16",
        bytes,
        "read_tensor_data",
    );
    assert_loads_refused::<f16>(&read, "f16", bytes);
    let lazy = LazyModel::<f32>::open_with(&path, LoadMode::Read, LoadOptions::default());
    assert_oom(lazy.unwrap().tensor("f16"), "f16", bytes * 2, "lazy f32");

    // A header whose string array of 2^37 entries fits the (sparse) file:
    // reading that much header cannot be done.
    let big = dir.path().join("strings.gguf");
    let mut h = Vec::new();
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&6u64.to_le_bytes());
    h.extend_from_slice(b"tokens");
    h.extend_from_slice(&9u32.to_le_bytes()); // array
    h.extend_from_slice(&8u32.to_le_bytes()); // of strings
    h.extend_from_slice(&(1u64 << 37).to_le_bytes());
    let mut f = std::fs::File::create(&big).unwrap();
    f.write_all(&h).unwrap();
    f.set_len(h.len() as u64 + (1 << 40)).unwrap();
    match MmapGGUFLoader::open(&big, LoadMode::Read) {
        Err(Error::Io { error, .. }) => {
            assert_eq!(error.kind(), std::io::ErrorKind::OutOfMemory, "{error}")
        }
        other => panic!("header of 2^37 strings: {other:?}"),
    }
}
