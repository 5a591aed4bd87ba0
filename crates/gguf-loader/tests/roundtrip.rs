//! Property tests: whatever the writer writes, the reader reads back the same.

use gguf_loader::{Endianness, GgmlType, GgufFile, GgufWriter, MetaValue, ValueType};
use proptest::prelude::*;

fn scalar(ty: ValueType) -> BoxedStrategy<MetaValue> {
    use MetaValue as M;
    match ty {
        ValueType::U8 => any::<u8>().prop_map(M::U8).boxed(),
        ValueType::I8 => any::<i8>().prop_map(M::I8).boxed(),
        ValueType::U16 => any::<u16>().prop_map(M::U16).boxed(),
        ValueType::I16 => any::<i16>().prop_map(M::I16).boxed(),
        ValueType::U32 => any::<u32>().prop_map(M::U32).boxed(),
        ValueType::I32 => any::<i32>().prop_map(M::I32).boxed(),
        // NaN is never equal to itself; the bit patterns are checked below.
        ValueType::F32 => any::<u32>().prop_map(|b| M::F32(f32::from_bits(b))).boxed(),
        ValueType::Bool => any::<bool>().prop_map(M::Bool).boxed(),
        ValueType::String => ".{0,12}".prop_map(M::String).boxed(),
        ValueType::U64 => any::<u64>().prop_map(M::U64).boxed(),
        ValueType::I64 => any::<i64>().prop_map(M::I64).boxed(),
        ValueType::F64 => any::<u64>().prop_map(|b| M::F64(f64::from_bits(b))).boxed(),
        ValueType::Array => unreachable!(),
    }
}

const SCALARS: [ValueType; 12] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::String,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

fn array_of(ty: ValueType) -> BoxedStrategy<MetaValue> {
    prop::collection::vec(scalar(ty), 0..6)
        .prop_map(move |items| MetaValue::Array(ty, items))
        .boxed()
}

fn value() -> impl Strategy<Value = MetaValue> {
    let scalars = prop::sample::select(SCALARS.to_vec()).prop_flat_map(scalar);
    let arrays = prop::sample::select(SCALARS.to_vec()).prop_flat_map(array_of);
    let nested = prop::sample::select(SCALARS.to_vec())
        .prop_flat_map(|t| prop::collection::vec(array_of(t), 0..4))
        .prop_map(|items| MetaValue::Array(ValueType::Array, items));
    prop_oneof![4 => scalars, 2 => arrays, 1 => nested]
}

/// Equality with floats compared by bits.
fn same(a: &MetaValue, b: &MetaValue) -> bool {
    match (a, b) {
        (MetaValue::F32(x), MetaValue::F32(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::F64(x), MetaValue::F64(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::Array(t, xs), MetaValue::Array(u, ys)) => {
            t == u && xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        _ => a == b,
    }
}

const TENSOR_TYPES: [GgmlType; 6] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q6_K,
    GgmlType::IQ2_XXS,
    GgmlType::I8,
];

fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>, Vec<u8>)> {
    (
        prop::sample::select(TENSOR_TYPES.to_vec()),
        1usize..3,
        prop::collection::vec(1u64..4, 0..3),
    )
        .prop_flat_map(|(ty, blocks, rest)| {
            let mut dims = vec![ty.block_size() * blocks as u64];
            dims.extend(rest);
            let n: u64 = dims.iter().product();
            let len = ty.byte_size(n).unwrap() as usize;
            (
                Just(ty),
                Just(dims),
                prop::collection::vec(any::<u8>(), len),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_then_read_gives_the_same(
        kvs in prop::collection::vec(("[a-z.]{1,12}", value()), 0..8),
        tensors in prop::collection::vec(tensor(), 0..5),
        version in 1u32..=3,
        big in any::<bool>(),
        align_pow in 0u32..8,
    ) {
        let endian = if big { Endianness::Big } else { Endianness::Little };
        let alignment = 1u32 << align_pow;
        let mut w = GgufWriter::new().version(version).endianness(endian).alignment(alignment);
        let mut expected: Vec<(String, MetaValue)> = w_metadata_prefix(alignment);
        for (k, v) in &kvs {
            if k == "general.alignment" { continue; }
            w.add(k.clone(), v.clone());
            match expected.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => expected.push((k.clone(), v.clone())),
            }
        }
        for (i, (ty, dims, data)) in tensors.iter().enumerate() {
            w.add_tensor(format!("t{i}"), dims, *ty, data.clone()).unwrap();
        }
        let bytes = w.to_bytes().unwrap();
        let f = GgufFile::parse(&bytes).unwrap();
        prop_assert_eq!(f.version, version);
        prop_assert_eq!(f.endianness, endian);
        prop_assert_eq!(f.alignment, u64::from(alignment));
        let got: Vec<(String, MetaValue)> = f
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), MetaValue::from_value(v)))
            .collect();
        prop_assert_eq!(got.len(), expected.len());
        for ((gk, gv), (ek, ev)) in got.iter().zip(&expected) {
            prop_assert_eq!(gk, ek);
            prop_assert!(same(gv, ev), "{}: {:?} != {:?}", gk, gv, ev);
        }
        prop_assert_eq!(f.tensors().len(), tensors.len());
        for (t, (ty, dims, data)) in f.tensors().iter().zip(&tensors) {
            prop_assert_eq!(t.ty, *ty);
            prop_assert_eq!(t.ne(), &dims[..]);
            prop_assert_eq!(f.tensor_data(t), Some(&data[..]));
            prop_assert_eq!(t.file_offset % u64::from(alignment), 0);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = GgufFile::parse(&bytes);
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        b.extend(&bytes);
        let _ = GgufFile::parse(&b);
    }
}

fn w_metadata_prefix(alignment: u32) -> Vec<(String, MetaValue)> {
    if alignment == 32 {
        vec![]
    } else {
        vec![("general.alignment".into(), MetaValue::U32(alignment))]
    }
}

/// What the writer would write but a reader rejects, or reads wrongly, it
/// refuses (`InvalidInput`), naming it: a `general.alignment` entry that is
/// not the writer's alignment (the tensors were read from the wrong offsets:
/// 1..16 decoded as eight zeros then 1..8), a tensor name added twice, a dim
/// or element count above `i64::MAX`, arrays nested deeper than a reader
/// takes. Just inside each limit, the file parses.
#[test]
fn the_writer_refuses_what_a_reader_would_not_read() {
    use gguf_loader::MAX_ARRAY_NESTING;
    let refused = |w: &GgufWriter<'_>, says: &str| {
        let e = w.to_bytes().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{says}: {e}");
        assert!(e.to_string().contains(says), "{says}: {e}");
    };
    let data = |n: usize| vec![0u8; n * 4];
    // The alignment key, added instead of set.
    let mut w = GgufWriter::new().alignment(64);
    w.add("general.alignment", MetaValue::U32(32));
    w.add_tensor("x", &[16], GgmlType::F32, data(16)).unwrap();
    refused(&w, "general.alignment is not the writer's alignment (64)");
    let mut w = GgufWriter::new();
    w.add("general.alignment", MetaValue::U64(32));
    refused(&w, "general.alignment is not the writer's alignment (32)");
    let mut w = GgufWriter::new().alignment(64);
    w.add("general.alignment", MetaValue::U32(64));
    w.add_tensor("x", &[16], GgmlType::F32, data(16)).unwrap();
    let bytes = w.to_bytes().unwrap();
    assert_eq!(GgufFile::parse(&bytes).unwrap().alignment, 64);
    // A name twice.
    let mut w = GgufWriter::new();
    w.add_tensor("x", &[4], GgmlType::F32, data(4)).unwrap();
    w.add_tensor("x", &[4], GgmlType::F32, data(4)).unwrap();
    refused(&w, "tensor 'x' is added twice");
    // Dims and counts past i64::MAX.
    let mut w = GgufWriter::new();
    for dims in [&[1u64 << 63, 0][..], &[1 << 32, 1 << 32]] {
        let e = w.add_tensor_info("big", dims, GgmlType::F32).err().unwrap();
        assert!(
            e.to_string().contains("element count overflows"),
            "{dims:?}: {e}"
        );
    }
    w.add_tensor_info("big", &[1 << 31, 1 << 31], GgmlType::I8)
        .unwrap();
    // Nesting: as deep as a reader takes, and one deeper.
    let nested = |depth: usize| {
        let mut v = MetaValue::Array(ValueType::U8, vec![MetaValue::U8(1)]);
        for _ in 1..depth {
            v = MetaValue::Array(ValueType::Array, vec![v]);
        }
        v
    };
    let mut w = GgufWriter::new();
    w.add("deep", nested(MAX_ARRAY_NESTING));
    GgufFile::parse(&w.to_bytes().unwrap()).unwrap();
    w.add("deep", nested(MAX_ARRAY_NESTING + 1));
    refused(&w, "key 'deep': arrays nested deeper than 64");
}
