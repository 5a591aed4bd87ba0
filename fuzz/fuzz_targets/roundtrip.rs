//! Builds metadata and tensors from arbitrary input, writes them with
//! `GgufWriter` in any version, byte order and alignment, parses the bytes
//! back and asserts everything survived (floats compared by bits).
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use gguf_loader::{
    Endianness, GgmlType, GgufFile, GgufWriter, MetaValue, ValueType, ALIGNMENT_KEY,
};
use libfuzzer_sys::fuzz_target;

const MAX_DEPTH: usize = 3;

fn value_type(u: &mut Unstructured<'_>, depth: usize) -> Result<ValueType> {
    let n = if depth < MAX_DEPTH { 13 } else { 12 };
    let id = u.int_in_range(0..=n - 1)?;
    // Array is id 9; at the depth limit, 9..=11 shift up past it.
    let id = if depth >= MAX_DEPTH && id >= 9 {
        id + 1
    } else {
        id
    };
    Ok(ValueType::from_id(id).unwrap())
}

fn value(u: &mut Unstructured<'_>, ty: ValueType, depth: usize) -> Result<MetaValue> {
    Ok(match ty {
        ValueType::U8 => MetaValue::U8(u.arbitrary()?),
        ValueType::I8 => MetaValue::I8(u.arbitrary()?),
        ValueType::U16 => MetaValue::U16(u.arbitrary()?),
        ValueType::I16 => MetaValue::I16(u.arbitrary()?),
        ValueType::U32 => MetaValue::U32(u.arbitrary()?),
        ValueType::I32 => MetaValue::I32(u.arbitrary()?),
        ValueType::U64 => MetaValue::U64(u.arbitrary()?),
        ValueType::I64 => MetaValue::I64(u.arbitrary()?),
        ValueType::F32 => MetaValue::F32(f32::from_bits(u.arbitrary()?)),
        ValueType::F64 => MetaValue::F64(f64::from_bits(u.arbitrary()?)),
        ValueType::Bool => MetaValue::Bool(u.arbitrary()?),
        ValueType::String => MetaValue::String(u.arbitrary()?),
        ValueType::Array => {
            let elem = value_type(u, depth + 1)?;
            let n = u.int_in_range(0..=8)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(u, elem, depth + 1)?);
            }
            MetaValue::Array(elem, items)
        }
    })
}

/// Equality with floats compared by their bits.
fn same(a: &MetaValue, b: &MetaValue) -> bool {
    match (a, b) {
        (MetaValue::F32(x), MetaValue::F32(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::F64(x), MetaValue::F64(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::Array(ta, xs), MetaValue::Array(tb, ys)) => {
            ta == tb && xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        _ => a == b,
    }
}

#[derive(Debug)]
struct Tensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Input {
    version: u32,
    endianness: Endianness,
    alignment: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<Tensor>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let version = u.int_in_range(1..=3)?;
        let endianness = if u.arbitrary()? {
            Endianness::Big
        } else {
            Endianness::Little
        };
        let alignment = 1u32 << u.int_in_range(0..=8)?;
        let mut metadata: Vec<(String, MetaValue)> = Vec::new();
        for _ in 0..u.int_in_range(0..=8)? {
            let key: String = u.arbitrary()?;
            let ty = value_type(u, 0)?;
            let v = value(u, ty, 0)?;
            if key != ALIGNMENT_KEY && !metadata.iter().any(|(k, _)| *k == key) {
                metadata.push((key, v));
            }
        }
        let mut tensors: Vec<Tensor> = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            let name: String = u.arbitrary()?;
            let ty = *u.choose(&GgmlType::ALL)?;
            let n_dims = u.int_in_range(0..=4)?;
            let mut dims = Vec::with_capacity(n_dims);
            for i in 0..n_dims {
                let d: u64 = u.int_in_range(0..=3)?;
                dims.push(if i == 0 { d * ty.block_size() } else { d });
            }
            let n: u64 = dims.iter().product();
            // A scalar (no dims) of a block type is not a whole block.
            let Some(len) = ty.byte_size(n) else {
                continue;
            };
            let len = len as usize;
            let mut data = vec![0u8; len];
            u.fill_buffer(&mut data)?;
            if !tensors.iter().any(|t| t.name == name) {
                tensors.push(Tensor {
                    name,
                    dims,
                    ty,
                    data,
                });
            }
        }
        Ok(Input {
            version,
            endianness,
            alignment,
            metadata,
            tensors,
        })
    }
}

fuzz_target!(|input: Input| {
    let mut w = GgufWriter::new()
        .version(input.version)
        .endianness(input.endianness)
        .alignment(input.alignment);
    let mut expected = Vec::new();
    if input.alignment != 32 {
        expected.push((ALIGNMENT_KEY.to_string(), MetaValue::U32(input.alignment)));
    }
    for (k, v) in &input.metadata {
        w.add(k.clone(), v.clone());
        expected.push((k.clone(), v.clone()));
    }
    for t in &input.tensors {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, t.data.as_slice())
            .expect("valid tensor refused");
    }
    let bytes = w.to_bytes().expect("write failed");
    let f = GgufFile::parse(&bytes).unwrap_or_else(|e| panic!("written file rejected: {e}"));

    assert_eq!(f.version, input.version);
    assert_eq!(f.endianness, input.endianness);
    assert_eq!(f.alignment, u64::from(input.alignment));
    assert_eq!(f.data_offset % f.alignment, 0);
    assert_eq!(f.metadata.len(), expected.len());
    for ((k, v), (pk, pv)) in expected.iter().zip(f.metadata.iter()) {
        assert_eq!(k, pk);
        let got = MetaValue::from_value(pv);
        assert!(same(v, &got), "{k}: wrote {v:?}, read {got:?}");
    }
    assert_eq!(f.tensors().len(), input.tensors.len());
    for (t, p) in input.tensors.iter().zip(f.tensors()) {
        assert_eq!(t.name, p.name);
        assert_eq!(t.dims, p.ne());
        assert_eq!(t.ty, p.ty);
        assert_eq!(p.file_offset % f.alignment, 0);
        assert_eq!(Some(&t.data[..]), f.tensor_data(p));
        assert!(std::ptr::eq(f.tensor(&t.name).unwrap(), p));
    }
});
