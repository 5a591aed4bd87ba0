"""Metadata and tensor descriptions equal gguf-py's reading (`GGUFReader`),
on every fixture and both real models, in both modes; raw bytes equal the
file's."""

import json
import math
import os
import pathlib

import gguf
import numpy as np
import pytest

import gguf_loader
from conftest import FIXTURES

FIXTURE_FILES = sorted(FIXTURES.glob("*.gguf"))
_READERS = {}


def reader(path):
    """gguf-py's reading of `path`, once per session (it takes seconds)."""
    if path not in _READERS:
        _READERS[path] = gguf.GGUFReader(path)
    return _READERS[path]


def same(a, b):
    """Equal values, NaN equal to NaN, -0.0 apart from 0.0."""
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def as_list(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, gguf_loader.StringArray):
        return list(value)
    if isinstance(value, list):
        return [as_list(v) for v in value]
    return value


def check_against_gguf_py(path, mode):
    r = reader(path)
    f = gguf_loader.open(path, mode)
    fields = [(k, v) for k, v in r.fields.items() if not k.startswith("GGUF.")]
    assert list(f.metadata) == [k for k, _ in fields]
    assert f.version == int(r.fields["GGUF.version"].contents())
    assert f.alignment == r.alignment
    assert f.data_offset == r.data_offset
    for key, field in fields:
        ours = f.metadata[key]
        types = [t.name.lower() for t in field.types]
        if types[0] == "array":
            if len(types) > 2 or (len(types) == 2 and types[1] == "array"):
                continue  # nested: gguf-py flattens them; see test_fixture_json
            if len(types) == 1:  # empty: gguf-py records no element type
                assert len(ours) == 0 and field.contents() == [], key
                continue
            assert f.metadata.type(key) == f"array[{types[-1]}]", key
            if types[-1] == "string":
                assert isinstance(ours, gguf_loader.StringArray), key
            else:
                assert isinstance(ours, np.ndarray) and not ours.flags.writeable, key
            assert same(as_list(ours), field.contents()), key
        else:
            assert f.metadata.type(key) == types[0], key
            assert same(ours, field.contents()), key
            assert type(ours) is type(field.contents()), key
    infos = list(f.tensors.values())
    assert [t.name for t in infos] == [t.name for t in r.tensors]
    for ours, theirs in zip(infos, r.tensors):
        assert int(ours.type) == int(theirs.tensor_type), ours.name
        assert ours.type.name == theirs.tensor_type.name, ours.name
        assert list(ours.ne) == [int(d) for d in theirs.shape], ours.name
        assert ours.shape == ours.ne[::-1]
        assert ours.n_elements == theirs.n_elements, ours.name
        assert ours.nbytes == theirs.n_bytes, ours.name
        assert ours.offset == theirs.data_offset, ours.name
        assert ours.data_section_offset == theirs.data_offset - r.data_offset
        raw = f.raw(ours.name)
        assert raw.dtype == np.uint8 and raw.shape == (ours.nbytes,) and not raw.flags.writeable
        assert raw.tobytes() == np.asarray(theirs.data).tobytes(), ours.name


@pytest.mark.parametrize("mode", ["mmap", "read"])
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_equals_gguf_py(path, mode):
    check_against_gguf_py(path, mode)


@pytest.mark.parametrize("mode", ["mmap", "read"])
def test_real_model_equals_gguf_py(real_model, mode):
    check_against_gguf_py(real_model, mode)


def json_value(v):
    """The fixture JSON's floats: NaN and the infinities are strings."""
    if isinstance(v, list):
        return [json_value(x) for x in v]
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v) if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity") else v


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_json(path):
    """Against the reference dumps, which also cover nested arrays."""
    want = json.loads(path.with_suffix(".json").read_text())
    f = gguf_loader.open(path)
    assert f.version == want["version"]
    assert f.endianness == want["endianness"]
    assert f.alignment == want["alignment"]
    assert f.data_offset == want["data_offset"]
    assert list(f.metadata) == list(want["metadata"])
    for key, value in want["metadata"].items():
        ours = as_list(f.metadata[key])
        if isinstance(ours, str):
            assert ours == value, key
        else:
            assert same(ours, json_value(value)), key
    for t in want["tensors"]:
        info = f.tensors[t["name"]]
        assert info.type.name == t["type"]
        assert list(info.ne) == t["ne"] and list(info.shape) == t["shape"]
        assert info.offset == t["offset"] and info.nbytes == t["n_bytes"]


def test_metadata_is_a_read_only_mapping(smollm2):
    from collections.abc import Mapping, Sequence

    f = gguf_loader.open(smollm2)
    m = f.metadata
    assert isinstance(m, Mapping)
    assert "general.architecture" in m and "nope" not in m
    assert m.get("nope") is None
    with pytest.raises(KeyError):
        m["nope"]
    with pytest.raises(TypeError):
        m["general.architecture"] = "x"
    assert dict(m.items())["general.architecture"] == "llama"
    tokens = m["tokenizer.ggml.tokens"]
    assert isinstance(tokens, Sequence)
    assert tokens[-1] == tokens[len(tokens) - 1]
    assert tokens[:3] == tokens.tolist()[:3] == [tokens[0], tokens[1], tokens[2]]
    assert tokens[::-7000] == tokens.tolist()[::-7000]
    with pytest.raises(IndexError):
        tokens[len(tokens)]
    with pytest.raises(IndexError):  # as a list says it, not TypeError
        tokens[2**63]
    with pytest.raises(TypeError):
        tokens["a"]
    # The Sequence methods, as a list has them.
    words = tokens.tolist()
    for word in ("<|im_end|>", words[-1], words[1000]):
        assert tokens.index(word) == words.index(word)
        assert tokens.count(word) == words.count(word)
    assert tokens.index(words[5], 5, 6) == 5
    assert tokens.index(words[-1], -1) == len(words) - 1
    with pytest.raises(ValueError):
        tokens.index(words[5], 6)
    with pytest.raises(ValueError):
        tokens.index("no such token \x00")
    assert tokens.count(3) == 0
    # Bounds beyond 64 bits are clamped, as list.index clamps them.
    assert tokens.index(words[5], -(10**30), 10**30) == words.index(words[5], -(10**30), 10**30)
    # Copies are itself (it is immutable); a pickle is the list of strings.
    import copy
    import pickle

    assert copy.copy(tokens) is tokens and copy.deepcopy(tokens) is tokens
    assert copy.deepcopy(dict(m))["tokenizer.ggml.tokens"] == words
    assert pickle.loads(pickle.dumps(tokens)) == words
    # Equal to a list, tuple or StringArray of the same strings, nothing else.
    first = m["tokenizer.ggml.merges"]
    assert tokens == words and tokens == tuple(words) and tokens == tokens
    assert not tokens == first and tokens != words[:-1] and tokens != words[:-1] + ["x"]
    two = tokens[:2]
    short = f.metadata["general.languages"] if "general.languages" in m else None
    for other in ("".join(two), dict(enumerate(two)), {"x": 1, "y": 2}, 5, None):
        assert tokens != other and not tokens == other
    if short is not None:
        assert short == short.tolist() and short != "".join(short.tolist())
    scores = m["tokenizer.ggml.token_type"]
    with pytest.raises(ValueError):
        scores[0] = 1
    tensors = f.tensors
    assert isinstance(tensors, Mapping)
    with pytest.raises(TypeError):
        tensors["x"] = None
    info = tensors["token_embd.weight"]
    assert info.type == gguf.GGMLQuantizationType.Q8_0
    assert info.type is gguf_loader.GGMLType.Q8_0


def test_raw_missing_tensor(smollm2):
    f = gguf_loader.open(smollm2)
    with pytest.raises(KeyError, match="nope"):
        f.raw("nope")
    # The same message as tensor()'s (and the CLI's), control characters
    # escaped alike.
    for name in ("nope", "no\x00pe\n"):
        with pytest.raises(KeyError) as raw:
            f.raw(name)
        with pytest.raises(KeyError) as decoded:
            f.tensor(name)
        assert str(raw.value) == str(decoded.value)


def test_paths_as_builtin_open_takes_them(smollm2, tmp_path):
    # str, bytes and path-like objects of either, and a name that is not
    # UTF-8 (bytes, or the str os.fsdecode makes of them).
    odd = os.path.join(os.fsencode(tmp_path), b"model-\xff.gguf")
    os.symlink(os.fsencode(smollm2), odd)
    for path in (str(smollm2), os.fsencode(smollm2), pathlib.Path(smollm2), odd, os.fsdecode(odd)):
        with gguf_loader.open(path) as f:
            assert "token_embd.weight" in f.tensors
    with pytest.raises(TypeError):
        gguf_loader.open(3)


class MyFile(gguf_loader.GGUFFile):
    """A subclass: it pickles as one."""


def test_a_file_pickles_as_its_path(real_model, tmp_path, monkeypatch):
    """A pickle opens the file again, by the absolute path it was opened
    with, in its mode: the same header, tensors and bytes. Metadata pickles
    as its file's; a subclass stays one; copies are the file opened anew."""
    import copy
    import pickle

    for mode in ("mmap", "read"):
        monkeypatch.chdir(real_model.parent)
        f = gguf_loader.open(real_model.name, mode)
        data = pickle.dumps(f)
        monkeypatch.chdir(tmp_path)  # made absolute when it was opened
        for g in (pickle.loads(data), copy.copy(f), copy.deepcopy(f)):
            assert type(g) is gguf_loader.GGUFFile and g is not f
            assert g.mode == mode and not g.closed
            assert os.path.isabs(g.paths[0]) and os.path.samefile(g.paths[0], real_model)
            assert g.tensors == f.tensors and list(g.metadata) == list(f.metadata)
            name = list(f.tensors)[-1]
            assert np.array_equal(g.raw(name), f.raw(name))
            g.close()
        assert not f.closed
        md = pickle.loads(pickle.dumps(f.metadata))
        assert list(md) == list(f.metadata)
        assert md["general.architecture"] == f.metadata["general.architecture"]
        assert list(md["tokenizer.ggml.tokens"][:50]) == list(f.metadata["tokenizer.ggml.tokens"][:50])
        mine = pickle.loads(pickle.dumps(MyFile(real_model, mode)))
        assert type(mine) is MyFile and mine.mode == mode
        f.close()
        with pytest.raises(ValueError, match="closed"):
            pickle.dumps(f)
        with pytest.raises(ValueError, match="closed"):
            pickle.dumps(f.metadata)


def test_a_pickled_file_changed_since_does_not_open(tmp_path):
    """A pickle of a file since replaced, grown or removed raises, naming it
    (a shard's size and the header's length are checked)."""
    import pickle
    import shutil

    path = tmp_path / "model.gguf"
    shutil.copyfile(FIXTURES / "all_types_le.gguf", path)
    f = gguf_loader.open(path)
    data, meta = pickle.dumps(f), pickle.dumps(f.metadata)
    assert pickle.loads(data).tensors == f.tensors
    with open(path, "ab") as out:
        out.write(bytes(64))
    for pickled in (data, meta):
        with pytest.raises(ValueError, match="not the file that was pickled") as e:
            pickle.loads(pickled)
        assert str(path) in str(e.value)
    # Replaced (a new file renamed into place: writing over a mapped file
    # would change what this process has mapped).
    shutil.copyfile(FIXTURES / "default_align.gguf", tmp_path / "new.gguf")
    os.replace(tmp_path / "new.gguf", path)
    with pytest.raises(ValueError, match="not the file that was pickled"):
        pickle.loads(data)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)
    # What was opened before stays as it was.
    assert np.array_equal(f.raw(list(f.tensors)[0]), f.raw(list(f.tensors)[0]))


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert gguf_loader.__version__ == version("gguf-loader")
    assert gguf_loader.__version__.count(".") == 2


def test_simd_features_names_the_path():
    assert gguf_loader.simd_features() in ("AVX-512 + AVX2", "AVX2", "NEON", "scalar")


def test_simd_features_follows_the_variable_in_a_new_interpreter():
    import os
    import subprocess
    import sys

    code = "import gguf_loader; print(gguf_loader.simd_features())"
    env = dict(os.environ, GGUF_LOADER_SIMD="scalar")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "scalar"


def test_nested_string_arrays(tmp_path):
    """Arrays of string arrays: each inner array reads its own strings
    (found once, when the value is converted, not by walking the outer
    array on every access), and type() names mixed inner types
    ``array[array]``."""
    path = tmp_path / "nested.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    inner = [[f"s{i}", f"t{i}", "é" * (i % 3)] for i in range(3000)]
    w.add_key_value("n", inner, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.ARRAY)
    w.add_key_value(
        "mixed", [["a", "b"], [1, 2]], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.ARRAY
    )
    w.add_key_value("deep", [[["x"]], [["y", "z"]]], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.ARRAY)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with gguf_loader.open(path) as f:
        m = f.metadata
        n = m["n"]
        assert [a.tolist() for a in n] == inner
        assert [a[-1] for a in n[::-997]] == [x[-1] for x in inner[::-997]]
        assert n[1234].index("t1234") == 1 and n[7].count("é") == 1
        assert m.type("n") == "array[array[string]]"
        assert m.type("mixed") == "array[array]"
        assert m.type("deep") == "array[array[array[string]]]"
        mixed = m["mixed"]
        assert mixed[0] == ["a", "b"] and list(mixed[1]) == [1, 2]
        assert [[list(b) for b in a] for a in m["deep"]] == [[["x"]], [["y", "z"]]]
    # Views outlive the file object.
    assert n[2999].tolist() == inner[2999]


def test_a_name_utf8_cannot_hold_is_missing(smollm2):
    """A lone surrogate is no tensor's name: KeyError, as for any other
    missing name (not UnicodeEncodeError)."""
    f = gguf_loader.open(smollm2)
    for call in (f.raw, f.tensor, lambda n: f.load(names=[n])):
        with pytest.raises(KeyError):
            call("\udcff")
    assert "\udcff" not in f.metadata and "\udcff" not in f.tensors
