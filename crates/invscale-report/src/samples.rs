//! The samples log (`--log-samples`): one line per document in lm-eval's layout (`doc_id`, `doc`,
//! `target`, `arguments`, `resps`, `filtered_resps`, metrics, sha256 hashes), written the way
//! Python's `json.dumps` writes it, so the hashes and the lines compare with lm-eval's.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use invscale_eval::DocResult;
use invscale_tasks::Document;

/// Python's `repr(float)`: the shortest digits that read back, fixed notation for exponents in
/// [-4, 16), else `d.ddde-05` style; integral values keep `.0`.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let sci = format!("{v:e}"); // shortest round-trip digits, e.g. -1.2345e-5
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{sign}{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point as usize], &digits[point as usize..])
        }
    } else {
        let rest = &digits[1..];
        let m = if rest.is_empty() { digits[..1].to_string() } else { format!("{}.{rest}", &digits[..1]) };
        format!("{sign}{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// serde_json formatting with Python `json.dumps`'s separators (`", "`, `": "`; with
/// `indent=2`: `","` + newline) and float reprs.
struct PyFormatter {
    pretty: Option<PrettyFormatter<'static>>,
}

impl Formatter for PyFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, v: f64) -> io::Result<()> {
        w.write_all(py_float(v).as_bytes())
    }
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty { Some(p) => p.begin_array(w), None => CompactFormatter.begin_array(w) }
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty { Some(p) => p.end_array(w), None => CompactFormatter.end_array(w) }
    }
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.begin_array_value(w, first),
            None if first => Ok(()),
            None => w.write_all(b", "),
        }
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty { Some(p) => p.end_array_value(w), None => Ok(()) }
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty { Some(p) => p.begin_object(w), None => CompactFormatter.begin_object(w) }
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty { Some(p) => p.end_object(w), None => CompactFormatter.end_object(w) }
    }
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.begin_object_key(w, first),
            None if first => Ok(()),
            None => w.write_all(b", "),
        }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty { Some(p) => p.end_object_value(w), None => Ok(()) }
    }
}

/// `json.dumps(value, ensure_ascii=False)` (`indent=2` when `pretty`).
pub fn py_json(value: &Value, pretty: bool) -> String {
    let mut out = Vec::new();
    let fmt = PyFormatter { pretty: pretty.then(|| PrettyFormatter::with_indent(b"  ")) };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).expect("writing to memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Python's `str(bool)`.
fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// One document's line (without the newline).
pub fn sample_line(doc: &Document, result: &DocResult) -> String {
    let doc_value = Value::Object(doc.fields.clone());
    let target = doc.body.answer().map_or(String::new(), |a| a.to_string());
    let requests = result.requests.iter().chain(&result.unconditional);
    let mut arguments = Map::new();
    for (i, r) in requests.clone().enumerate() {
        arguments.insert(format!("gen_args_{i}"), json!({"arg_0": r.context, "arg_1": r.continuation}));
    }
    let resps: Vec<Value> = requests.clone().map(|r| json!([[py_float(r.ll), py_bool(r.greedy)]])).collect();
    let filtered: Vec<Value> = requests.clone().map(|r| json!([py_float(r.ll), py_bool(r.greedy)])).collect();
    let mut line = Map::new();
    line.insert("doc_id".into(), json!(doc.id));
    line.insert("doc".into(), doc_value.clone());
    line.insert("target".into(), json!(target));
    line.insert("arguments".into(), Value::Object(arguments));
    line.insert("resps".into(), json!(resps));
    line.insert("filtered_resps".into(), json!(filtered));
    line.insert("filter".into(), json!("none"));
    line.insert("metrics".into(), json!(result.metrics.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>()));
    line.insert("doc_hash".into(), json!(sha256_hex(&py_json(&doc_value, true))));
    line.insert("prompt_hash".into(), json!(sha256_hex(result.requests.first().map_or("", |r| r.context.as_str()))));
    line.insert("target_hash".into(), json!(sha256_hex(&target)));
    for (m, v) in &result.metrics {
        line.insert(m.as_str().into(), json!(v));
    }
    // invscale's own per-request detail (token counts, truncation, boundary fallback).
    line.insert(
        "invscale".into(),
        json!(requests
            .map(|r| json!({"context_tokens": r.context_tokens, "continuation_tokens": r.continuation_tokens,
                            "truncated": r.truncated, "boundary_fallback": r.boundary_fallback}))
            .collect::<Vec<_>>()),
    );
    py_json(&Value::Object(line), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        // Values as Python 3.11 prints them.
        for (v, py) in [
            (-3.9326233863830566, "-3.9326233863830566"),
            (1.0, "1.0"),
            (-0.0001234, "-0.0001234"),
            (-1.234e-5, "-1.234e-05"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.1, "0.1"),
            (-120.5, "-120.5"),
            (5e-324, "5e-324"),
            (1.5e300, "1.5e+300"),
        ] {
            assert_eq!(py_float(v), py, "{v:e}");
        }
    }

    #[test]
    fn json_dumps_layout() {
        let v = json!({"a": [1, 2.5, "é\n"], "b": {}, "c": []});
        assert_eq!(py_json(&v, false), r#"{"a": [1, 2.5, "é\n"], "b": {}, "c": []}"#);
        // json.dumps(..., indent=2, ensure_ascii=False)
        assert_eq!(py_json(&v, true), "{\n  \"a\": [\n    1,\n    2.5,\n    \"é\\n\"\n  ],\n  \"b\": {},\n  \"c\": []\n}");
    }

    #[test]
    fn lm_eval_hashes() {
        // lm-eval's target_hash of target 0 (from its samples file) and of the empty string.
        assert_eq!(sha256_hex("0"), "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9");
        assert_eq!(sha256_hex("1"), "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b");
    }
}
