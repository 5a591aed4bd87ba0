//! The pre-tokenizer table and character categories against the sources
//! of the llama.cpp this crate is held against (`llama-vocab.cpp` and
//! `unicode-data.cpp` of the one vendored in llama-cpp-python 0.3.36),
//! extracted into the cache by `scripts/fetch-vocab-tests.sh`. Skipped
//! with a message when they are absent, unless `GGUF_LOADER_REQUIRE_MODEL`
//! is set.

use std::collections::BTreeMap;

use fancy_regex::Regex;

use super::pre::{category_class, escapes_spaces, kimi_k2, table, DIGITS3};

/// One file of llama.cpp's `src/`, from the vocab-tests cache:
/// `$GGUF_LOADER_VOCAB_TESTS`, else `vocab-tests` in `$GGUF_LOADER_CACHE`
/// (else `~/.cache/gguf-loader`), as the integration tests find it. Absent:
/// `None`, saying so, or a failure where `GGUF_LOADER_REQUIRE_MODEL` is set.
fn llama_src(file: &str) -> Option<String> {
    let var = |v: &str| std::env::var_os(v).map(std::path::PathBuf::from);
    let dir = var("GGUF_LOADER_VOCAB_TESTS").unwrap_or_else(|| {
        var("GGUF_LOADER_CACHE")
            .unwrap_or_else(|| var("HOME").unwrap_or_default().join(".cache/gguf-loader"))
            .join("vocab-tests")
    });
    let path = dir.join(file);
    if !path.exists() {
        let why = format!(
            "{} is missing (run scripts/fetch-vocab-tests.sh)",
            path.display()
        );
        assert!(var("GGUF_LOADER_REQUIRE_MODEL").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return None;
    }
    Some(std::fs::read_to_string(path).unwrap())
}

/// The C string literal that starts at the first `"` of `line`, unescaped.
fn c_literal(line: &str) -> Option<String> {
    let start = line.find('"')?;
    let mut out = String::new();
    let mut chars = line[start + 1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// llama.cpp's flags of a pre-tokenizer name: `(pre type, ignore_merges,
/// clean_spaces, add_bos, escape_whitespaces)`, read off
/// `llama_vocab::impl::load`.
fn llama_names(src: &str) -> BTreeMap<String, (String, bool, bool, bool, bool)> {
    let begin = src.find("if (tokenizer_pre.empty())").unwrap();
    let end = src[begin..].find("unknown pre-tokenizer type").unwrap() + begin;
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    let (mut ty, mut ignore, mut clean, mut bos, mut escape) =
        (String::new(), false, true, false, false);
    for line in src[begin..end].lines() {
        let line = line.trim();
        if line.starts_with("} else") {
            for n in names.drain(..) {
                out.insert(n, (ty.clone(), ignore, clean, bos, escape));
            }
            (ignore, clean, bos, escape) = (false, true, false, false);
        }
        if line.contains("tokenizer_pre == ") {
            names.push(c_literal(line).unwrap());
        }
        if let Some(t) = line.strip_prefix("pre_type = LLAMA_VOCAB_PRE_TYPE_") {
            ty = t.trim_end_matches(';').to_string();
        }
        match line {
            "ignore_merges = true;" => ignore = true,
            "clean_spaces = false;" => clean = false,
            "add_bos = true;" => bos = true,
            "escape_whitespaces = true;" => escape = true,
            _ => {}
        }
    }
    for n in names.drain(..) {
        out.insert(n, (ty.clone(), ignore, clean, bos, escape));
    }
    out
}

/// llama.cpp's expressions of each pre type and whether it turns
/// `byte_encode` off, read off the constructor of `llm_tokenizer_bpe`
/// (`default:` is `DEFAULT`).
fn llama_exprs(src: &str) -> BTreeMap<String, (Vec<String>, bool)> {
    let begin = src
        .find("llm_tokenizer_bpe(const llama_vocab & vocab)")
        .unwrap();
    let end = src[begin..]
        .find("std::vector<std::string> regex_exprs;")
        .unwrap()
        + begin;
    let mut out = BTreeMap::new();
    let mut types = Vec::new();
    let mut exprs: Option<Vec<String>> = None;
    let mut done: Vec<String> = Vec::new();
    for line in src[begin..end].lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix("case LLAMA_VOCAB_PRE_TYPE_") {
            types.push(t.trim_end_matches(':').to_string());
        } else if line == "default:" {
            types.push("DEFAULT".to_string());
        } else if line == "regex_exprs = {" {
            exprs = Some(Vec::new());
        } else if line == "};" {
            let e = exprs.take().unwrap();
            for t in types.drain(..) {
                out.insert(t.clone(), (e.clone(), false));
                done.push(t);
            }
        } else if line.starts_with("byte_encode = false;") {
            for t in &done {
                if let Some(v) = out.get_mut(t) {
                    v.1 = true;
                }
            }
        } else if line == "break;" {
            done.clear();
        } else if line.starts_with('"') {
            if let Some(e) = exprs.as_mut() {
                e.push(c_literal(line).unwrap());
            }
        }
    }
    out
}

/// A llama.cpp expression as this crate's table writes it: the
/// look-ahead letter classes as plain classes, the custom digit splitters
/// as [`DIGITS3`], kimi-k2's custom splitter as [`kimi_k2`], std::regex's
/// ASCII `\d` as `[0-9]`.
fn as_ours(e: &str) -> String {
    match e {
        r"\p{AFMoE_digits}" | r"\d{1,3}(?=(?:\d{3})*\b)" => return DIGITS3.to_string(),
        r"\p{Han}+" => return kimi_k2(),
        _ => {}
    }
    let mut e = e.to_string();
    for w in [r"\p{L}", r"\p{L}\p{M}"] {
        e = e
            .replace(&format!("((?=[{w}])([^a-z]))"), &format!("[[{w}]--[a-z]]"))
            .replace(&format!("((?=[{w}])([^A-Z]))"), &format!("[[{w}]--[A-Z]]"));
    }
    e.replace(r"\d", "[0-9]")
}

/// The names llama.cpp knows that this crate refuses.
const REFUSED: &[&str] = &["whitespace"];

#[test]
fn the_table_is_llama_cpps() {
    let Some(src) = llama_src("llama-vocab.cpp") else {
        return;
    };
    let names = llama_names(&src);
    let exprs = llama_exprs(&src);
    assert!(names.len() > 80, "{} names read", names.len());
    let mut checked = 0;
    let mut errors = Vec::new();
    for (name, (ty, ignore, clean, bos, escape)) in &names {
        let ours = table(name);
        if REFUSED.contains(&name.as_str()) {
            if ours.is_some() {
                errors.push(format!("{name} is refused"));
            }
            continue;
        }
        let Some((ours, o_ignore, o_clean, o_bos)) = ours else {
            errors.push(format!("{name} ({ty}) is missing"));
            continue;
        };
        let (theirs, no_byte_encode) = exprs.get(ty).or_else(|| exprs.get("DEFAULT")).unwrap();
        let theirs: Vec<String> = theirs.iter().map(|e| as_ours(e)).collect();
        if escapes_spaces(name) != *escape || *escape != *no_byte_encode {
            errors.push(format!(
                "{name} ({ty}): escape_whitespaces {escape}, byte_encode off {no_byte_encode}, \
                 ours {}",
                escapes_spaces(name)
            ));
        }
        if ours != theirs {
            errors.push(format!(
                "{name} ({ty}): expressions\n  ours:   {ours:?}\n  theirs: {theirs:?}"
            ));
        }
        if (o_ignore, o_clean, o_bos) != (*ignore, *clean, *bos) {
            errors.push(format!(
                "{name} ({ty}): (ignore_merges, clean_spaces, add_bos) ours {:?}, theirs {:?}",
                (o_ignore, o_clean, o_bos),
                (ignore, clean, bos)
            ));
        }
        checked += 1;
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(table("default").is_some());
    eprintln!("{checked} pre-tokenizer names equal to llama.cpp's");
}

/// `unicode_ranges_flags` of llama.cpp's `unicode-data.cpp`: each range's
/// first code point and flags, ascending.
fn llama_flags(src: &str) -> Vec<(u32, u16)> {
    let begin = src.find("unicode_ranges_flags = {").unwrap();
    let body = &src[begin..];
    let body = &body[..body.find("};").unwrap()];
    body.lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.trim().strip_prefix("{0x")?;
            let (a, b) = l.split_once(", 0x")?;
            let b = b.trim_end_matches("},");
            Some((
                u32::from_str_radix(a, 16).unwrap(),
                u16::from_str_radix(b, 16).unwrap(),
            ))
        })
        .collect()
}

/// Inclusive ranges of the sorted code points `cps`, as Rust source.
fn ranges(cps: &[u32]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cps.len() {
        let mut j = i;
        while j + 1 < cps.len() && cps[j + 1] == cps[j] + 1 {
            j += 1;
        }
        out.push(format!("(0x{:X}, 0x{:X})", cps[i], cps[j]));
        i = j + 1;
    }
    out.join(", ")
}

#[test]
fn categories_are_llama_cpps() {
    let Some(src) = llama_src("unicode-data.cpp") else {
        return;
    };
    let flags = llama_flags(&src);
    assert!(
        flags.len() > 1000 && flags[0].0 == 0,
        "{} ranges read",
        flags.len()
    );
    let ws_begin = src.find("unicode_set_whitespace = {").unwrap();
    let ws_body = &src[ws_begin..];
    let whitespace: Vec<u32> = ws_body[ws_body.find('{').unwrap() + 1..ws_body.find('}').unwrap()]
        .split(',')
        .filter_map(|t| u32::from_str_radix(t.trim().strip_prefix("0x")?, 16).ok())
        .collect();
    assert!(whitespace.contains(&0x3000));
    let cats = [
        ("L", 0x4u16),
        ("N", 0x2),
        ("M", 0x10),
        ("P", 0x20),
        ("S", 0x40),
    ];
    let res: Vec<Regex> = cats
        .iter()
        .map(|(c, _)| Regex::new(&format!("^{}$", category_class(c))).unwrap())
        .chain([Regex::new(r"^\s$").unwrap()])
        .collect();
    let mut minus = vec![Vec::new(); res.len()];
    let mut plus = vec![Vec::new(); res.len()];
    let mut range = 0;
    let mut buf = [0; 4];
    for cp in 0..0x11_0000u32 {
        let Some(ch) = char::from_u32(cp) else {
            continue;
        };
        while range + 1 < flags.len() && flags[range + 1].0 <= cp {
            range += 1;
        }
        let f = flags[range].1;
        let s = ch.encode_utf8(&mut buf);
        for (k, re) in res.iter().enumerate() {
            let theirs = match cats.get(k) {
                Some(&(_, bit)) => f & bit != 0,
                None => whitespace.contains(&cp),
            };
            match (re.is_match(s).unwrap(), theirs) {
                (true, false) => minus[k].push(cp),
                (false, true) => plus[k].push(cp),
                _ => {}
            }
        }
    }
    let mut report = String::new();
    for (k, name) in cats.iter().map(|c| c.0).chain(["\\s"]).enumerate() {
        if !minus[k].is_empty() || !plus[k].is_empty() {
            report += &format!(
                "    (\"{name}\", &[{}], &[{}]),\n",
                ranges(&minus[k]),
                ranges(&plus[k])
            );
        }
    }
    assert!(
        report.is_empty(),
        "categories differ from llama.cpp's (CATEGORY_FIXES):\n{report}"
    );
}
