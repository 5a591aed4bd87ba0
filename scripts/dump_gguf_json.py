#!/usr/bin/env python3
"""Dump GGUF files as JSON using gguf-py's GGUFReader (the reference reader).

Usage:
    scripts/dump_gguf_json.py FILE              -> one dump object
    scripts/dump_gguf_json.py FILE FILE ...     -> {"FILE": dump, ...}
    scripts/dump_gguf_json.py --write-fixture-json
        -> writes tests/fixtures/<name>.json for every tests/fixtures/<name>.gguf

Schema (must match `gguf-loader inspect --json`):
    {"version": int, "endianness": "little"|"big", "alignment": int,
     "data_offset": int, "metadata": {key: value, ...},
     "metadata_types": {key: "uint32" | "string" | "array[float32]" | ...},
     "tensors": [{"name": str, "type": "Q4_0", "ne": [ne0, ne1, ...],
                  "shape": row-major, ne reversed,
                  "offset": absolute byte offset, "n_bytes": int}, ...]}

Metadata values: ints -> JSON ints, bools -> JSON bools, floats -> JSON numbers
(f32 widened exactly to f64; printed with Python's shortest round-trip repr),
NaN / +Inf / -Inf -> the strings "NaN", "Infinity", "-Infinity", strings ->
JSON strings (UTF-8 decoded), arrays -> JSON lists (nested arrays as nested
lists).  Metadata and tensors are in file order.  The synthetic "GGUF.*"
fields that GGUFReader adds are omitted.

Note: ReaderField.contents() flattens nested arrays, so values are rebuilt here
by walking ReaderField.parts, which holds every raw component in file order
(array: item type, length, then each item's parts; string: length, bytes).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gguf import GGUFEndian, GGUFReader, GGUFValueType as VT
from gguf.constants import GGUF_DEFAULT_ALIGNMENT

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"

SCALAR_TYPES = {
    VT.UINT8, VT.INT8, VT.UINT16, VT.INT16, VT.UINT32, VT.INT32,
    VT.FLOAT32, VT.UINT64, VT.INT64, VT.FLOAT64, VT.BOOL,
}


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _scalar(vtype: VT, part: np.ndarray) -> Any:
    assert part.shape == (1,), (vtype, part.shape)
    v = part.tolist()[0]  # respects the (possibly swapped) byte order of the view
    if vtype == VT.BOOL:
        return bool(v)
    if vtype in (VT.FLOAT32, VT.FLOAT64):
        return _float(float(v))  # f32 -> Python float is exact
    return int(v)


def _decode(vtype: VT, parts: Iterator[np.ndarray]) -> Any:
    if vtype == VT.STRING:
        _length = next(parts)
        data = next(parts)
        return bytes(data).decode("utf-8")
    if vtype in SCALAR_TYPES:
        return _scalar(vtype, next(parts))
    if vtype == VT.ARRAY:
        item_type = VT(int(next(parts)[0]))
        length = int(next(parts)[0])
        return [_decode(item_type, parts) for _ in range(length)]
    raise ValueError(f"unknown GGUF value type {vtype!r}")


def field_value(field: Any) -> Any:
    # parts: [key_len, key_bytes, value_type, *value_parts]
    vtype = VT(int(field.parts[2][0]))
    it = iter(field.parts[3:])
    value = _decode(vtype, it)
    rest = list(it)
    if rest:
        raise ValueError(f"field {field.name!r}: {len(rest)} unconsumed parts")
    return value


def field_type(field: Any) -> str:
    """The GGUF type name of a field's value ("array[ELEMENT]" for arrays)."""
    vtype = VT(int(field.parts[2][0]))
    if vtype == VT.ARRAY:
        return f"array[{VT(int(field.parts[3][0])).name.lower()}]"
    return vtype.name.lower()


def dump(path: str | Path) -> dict[str, Any]:
    r = GGUFReader(path, "r")
    version = int(r.fields["GGUF.version"].parts[0][0])
    metadata: dict[str, Any] = {}
    types: dict[str, str] = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # synthetic header fields added by GGUFReader
        metadata[name] = field_value(field)
        types[name] = field_type(field)
    tensors = []
    for t in r.tensors:
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            # gguf-py's `shape` is ggml's ne: file order, ne[0] first.
            "ne": [int(d) for d in t.shape.tolist()],
            "shape": [int(d) for d in reversed(t.shape.tolist())],
            "offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
        })
    align = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    assert int(align) == int(r.alignment)
    return {
        "version": version,
        "endianness": "big" if r.endianess == GGUFEndian.BIG else "little",
        "alignment": int(align),
        "data_offset": int(r.data_offset),
        "metadata": metadata,
        "metadata_types": types,
        "tensors": tensors,
    }


def to_json(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=indent)


def write_fixture_json() -> int:
    files = sorted(FIXTURES.glob("*.gguf"))
    if not files:
        print(f"no .gguf files in {FIXTURES}", file=sys.stderr)
        return 1
    for f in files:
        out = f.with_suffix(".json")
        out.write_text(to_json(dump(f), indent=1) + "\n", encoding="utf-8")
        print(out)
    return 0


def main(argv: list[str]) -> int:
    args = argv[1:]
    if args == ["--write-fixture-json"]:
        return write_fixture_json()
    if not args or any(a.startswith("-") for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    if len(args) == 1:
        result: Any = dump(args[0])
    else:
        result = {a: dump(a) for a in args}
    sys.stdout.write(to_json(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
