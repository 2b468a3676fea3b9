//! Readers for every format the task data exists in: the prize release JSONL, JSON arrays,
//! the prize submission CSV, and Hugging Face parquet. Each gives raw rows (column → value)
//! with their location; byte-level problems (BOM, CRLF, non-UTF-8, a truncated last line) are
//! diagnostics, and reading goes on past a bad row so that every problem is reported at once.

use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

use crate::diag::{Diagnostics, Location};

/// A data file format, from the file name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Json,
    Csv,
    Parquet,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let ext = name.rsplit('.').next()?;
        match ext {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
    pub const EXTENSIONS: &[&str] = &["jsonl", "json", "csv", "parquet"];
}

/// One record as read, before any column mapping.
#[derive(Clone, Debug)]
pub struct RawRow {
    pub location: Location,
    pub fields: Map<String, Value>,
    /// Whether values carry their types (JSON, parquet). CSV cells are all text, so an
    /// integer column arrives as `"0"` and must be parsed.
    pub typed: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads all rows of a file; problems go to `diags`. The rows that could be read are returned
/// even when others could not.
pub fn read_rows(path: &Path, diags: &mut Diagnostics) -> Vec<RawRow> {
    let Some(format) = Format::from_path(path) else {
        diags.error(
            Location::File,
            None,
            format!("unknown data format: the file name must end in one of .{}", Format::EXTENSIONS.join(", .")),
        );
        return Vec::new();
    };
    if format == Format::Parquet {
        return read_parquet(path, diags);
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            diags.error(Location::File, None, format!("cannot read the file: {e}"));
            return Vec::new();
        }
    };
    let mut body: &[u8] = &bytes;
    if let Some(rest) = body.strip_prefix(BOM) {
        diags.warning(Location::Line(1), None, "the file starts with a UTF-8 byte-order mark (BOM); it was skipped");
        body = rest;
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        diags.error(Location::File, None, "the file is empty: no rows");
        return Vec::new();
    }
    let crlf = body.windows(2).filter(|w| w == b"\r\n").count();
    if crlf > 0 {
        diags.warning(
            Location::File,
            None,
            format!("{crlf} line(s) end in CRLF (Windows line endings); they were read as LF"),
        );
    }
    match format {
        Format::Jsonl => read_jsonl(body, diags),
        Format::Json => read_json_array(body, diags),
        Format::Csv => read_csv(body, diags),
        Format::Parquet => unreachable!("handled above"),
    }
}

fn utf8_problem(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let bad: Vec<String> = bytes[at..bytes.len().min(at + 4)].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "not valid UTF-8 at byte {} of the line (bytes {}): save the file as UTF-8",
        at + 1,
        bad.join(" ")
    )
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn describe_value(v: &Value) -> String {
    let text = v.to_string();
    let short: String = text.chars().take(40).collect();
    let ellipsis = if text.chars().count() > 40 { "…" } else { "" };
    format!("{} ({short}{ellipsis})", json_type(v))
}

fn read_jsonl(body: &[u8], diags: &mut Diagnostics) -> Vec<RawRow> {
    let ends_with_newline = body.ends_with(b"\n");
    let pieces: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let last_index = pieces.len() - 1;
    let mut rows = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.into_iter().enumerate() {
        let line_no = i + 1;
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let loc = Location::Line(line_no);
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                diags.error(loc, None, utf8_problem(line, e));
                continue;
            }
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => rows.push(RawRow { location: loc, fields, typed: true }),
            Ok(other) => diags.error(loc, None, format!("expected a JSON object {{…}} but found {}", describe_value(&other))),
            Err(e) if i == last_index && !ends_with_newline && e.is_eof() => diags.error(
                loc,
                None,
                "truncated last line: the file ends in the middle of a record (incomplete JSON, no final newline)",
            ),
            Err(e) => diags.error(loc, None, format!("invalid JSON at column {}: {}", e.column(), strip_position(&e))),
        }
    }
    rows
}

/// serde_json appends " at line L column C"; the diagnostic already says where.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn read_json_array(body: &[u8], diags: &mut Diagnostics) -> Vec<RawRow> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'[') {
        // HF's json loader reads JSON Lines from .json files too.
        return read_jsonl(body, diags);
    }
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            let line = body[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            let start = body[..e.valid_up_to()].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let line_bytes = &body[start..];
            let end = line_bytes.iter().position(|&b| b == b'\n').unwrap_or(line_bytes.len());
            let line_bytes = &line_bytes[..end];
            let err = std::str::from_utf8(line_bytes).expect_err("the invalid byte is on this line");
            diags.error(Location::Line(line), None, utf8_problem(line_bytes, err));
            return Vec::new();
        }
    };
    let items: Vec<Value> = match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => unreachable!("starts with ["),
        Err(e) => {
            let message = if e.is_eof() {
                "truncated: the file ends before the JSON array is closed".to_string()
            } else {
                format!("invalid JSON at column {}: {}", e.column(), strip_position(&e))
            };
            diags.error(Location::Line(e.line()), None, message);
            return Vec::new();
        }
    };
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let loc = Location::Row(i + 1);
        match item {
            Value::Object(fields) => rows.push(RawRow { location: loc, fields, typed: true }),
            other => diags.error(loc, None, format!("expected a JSON object {{…}} but found {}", describe_value(&other))),
        }
    }
    rows
}

fn read_csv(body: &[u8], diags: &mut Diagnostics) -> Vec<RawRow> {
    let ends_with_newline = body.ends_with(b"\n");
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(body);
    let headers: Vec<String> = match reader.byte_headers() {
        Ok(h) => {
            let mut names = Vec::with_capacity(h.len());
            for (i, cell) in h.iter().enumerate() {
                match std::str::from_utf8(cell) {
                    Ok(s) => names.push(s.to_string()),
                    Err(e) => {
                        diags.error(Location::Line(1), None, format!("header cell {}: {}", i + 1, utf8_problem(cell, e)));
                        names.push(format!("column {}", i + 1));
                    }
                }
            }
            names
        }
        Err(e) => {
            diags.error(Location::Line(1), None, format!("cannot read the CSV header: {e}"));
            return Vec::new();
        }
    };
    let mut seen = std::collections::HashSet::new();
    for name in &headers {
        if !name.is_empty() && !seen.insert(name) {
            diags.error(Location::Line(1), Some(name), "the header names this column twice");
        }
    }
    let records: Vec<_> = reader.byte_records().collect();
    let last = records.len().saturating_sub(1);
    let mut rows = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                diags.error(Location::Line(line), None, format!("malformed CSV: {e}"));
                continue;
            }
        };
        let loc = Location::Line(record.position().map_or(0, |p| p.line() as usize));
        if record.len() == 1 && record.get(0) == Some(b"") {
            continue; // a blank line
        }
        if record.len() != headers.len() {
            let message = if i == last && !ends_with_newline && record.len() < headers.len() {
                format!(
                    "truncated last line: {} of {} fields, and the file ends without a newline",
                    record.len(),
                    headers.len()
                )
            } else {
                format!(
                    "expected {} fields ({}) but found {}",
                    headers.len(),
                    headers.iter().filter(|h| !h.is_empty()).cloned().collect::<Vec<_>>().join(", "),
                    record.len()
                )
            };
            diags.error(loc, None, message);
            continue;
        }
        let mut fields = Map::new();
        let mut ok = true;
        for (name, cell) in headers.iter().zip(record.iter()) {
            match std::str::from_utf8(cell) {
                Ok(s) => {
                    fields.insert(name.clone(), Value::String(s.to_string()));
                }
                Err(e) => {
                    diags.error(loc, Some(name), utf8_problem(cell, e).replace("of the line", "of the field"));
                    ok = false;
                }
            }
        }
        if ok {
            rows.push(RawRow { location: loc, fields, typed: false });
        }
    }
    rows
}

fn read_parquet(path: &Path, diags: &mut Diagnostics) -> Vec<RawRow> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            diags.error(Location::File, None, format!("cannot read the file: {e}"));
            return Vec::new();
        }
    };
    let reader = match SerializedFileReader::new(file) {
        Ok(r) => r,
        Err(e) => {
            diags.error(Location::File, None, format!("not a readable parquet file: {e}"));
            return Vec::new();
        }
    };
    let iter = match reader.get_row_iter(None) {
        Ok(it) => it,
        Err(e) => {
            diags.error(Location::File, None, format!("cannot read parquet rows: {e}"));
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for (i, row) in iter.enumerate() {
        let loc = Location::Row(i + 1);
        match row {
            Ok(row) => {
                let mut fields = Map::new();
                for (name, field) in row.get_column_iter() {
                    fields.insert(name.clone(), parquet_value(field));
                }
                rows.push(RawRow { location: loc, fields, typed: true });
            }
            Err(e) => {
                diags.error(loc, None, format!("cannot decode this row: {e}"));
                break; // a broken page ends the file's readable part
            }
        }
    }
    rows
}

fn parquet_value(field: &parquet::record::Field) -> Value {
    use parquet::record::Field;
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => (*v).into(),
        Field::Short(v) => (*v).into(),
        Field::Int(v) => (*v).into(),
        Field::Long(v) => (*v).into(),
        Field::UByte(v) => (*v).into(),
        Field::UShort(v) => (*v).into(),
        Field::UInt(v) => (*v).into(),
        Field::ULong(v) => (*v).into(),
        Field::Float(v) => serde_json::Number::from_f64(f64::from(*v)).map_or(Value::Null, Value::Number),
        Field::Double(v) => serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::String(String::from_utf8_lossy(b.data()).into_owned()),
        },
        Field::ListInternal(list) => {
            Value::Array((0..list.len()).map(|i| parquet_value(list.elements().get(i).expect("index < len"))).collect())
        }
        // Nested structs (TruthfulQA's `mc1_targets: {choices, labels}`) and maps.
        Field::Group(row) => Value::Object(row.get_column_iter().map(|(k, v)| (k.clone(), parquet_value(v))).collect()),
        Field::MapInternal(map) => Value::Object(
            map.entries().iter().map(|(k, v)| (match parquet_value(k) { Value::String(s) => s, other => other.to_string() }, parquet_value(v))).collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// The column names of a data file, read cheaply (header, first record, or parquet schema);
/// used to guess the task type of a bare data file.
pub fn column_names(path: &Path) -> Result<Vec<String>, String> {
    let format = Format::from_path(path).ok_or("unknown data format")?;
    if format == Format::Parquet {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let file = fs::File::open(path).map_err(|e| e.to_string())?;
        let reader = SerializedFileReader::new(file).map_err(|e| format!("not a readable parquet file: {e}"))?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        return Ok(schema.root_schema().get_fields().iter().map(|f| f.name().to_string()).collect());
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let body = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    if format == Format::Csv {
        let mut reader = csv::ReaderBuilder::new().from_reader(body);
        let headers = reader.headers().map_err(|e| format!("cannot read the CSV header: {e}"))?;
        return Ok(headers.iter().map(str::to_string).collect());
    }
    // JSON / JSONL: the keys of the first object.
    let mut diags = Diagnostics::new(path);
    let first_line: Vec<u8> = body.split(|&b| b == b'\n').find(|l| !l.iter().all(u8::is_ascii_whitespace)).unwrap_or(&[]).to_vec();
    let rows = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        read_json_array(body, &mut diags)
    } else {
        read_jsonl(&first_line, &mut diags)
    };
    rows.first().map(|r| r.fields.keys().cloned().collect()).ok_or_else(|| "no readable first record".to_string())
}
