//! The Python list-literal parser against CPython itself (a fixture written by CPython's
//! `repr` and `ast.literal_eval`, see fixtures/gen_pylit_cases.py), and property tests that
//! round-trip random lists through Python's way of printing them.

use invscale_tasks::pylit::{parse_str_list, python_repr_list};
use proptest::prelude::*;

#[derive(serde::Deserialize)]
struct Case {
    src: String,
    ok: bool,
    value: Option<Vec<String>>,
}

#[test]
fn agrees_with_cpython_on_every_fixture_case() {
    let text = include_str!("../fixtures/pylit_cpython.jsonl");
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let case: Case = serde_json::from_str(line).unwrap();
        let got = parse_str_list(&case.src);
        match (case.ok, got) {
            (true, Ok(v)) => assert_eq!(Some(v), case.value, "line {}: {:?}", i + 1, case.src),
            (false, Err(_)) => {}
            (true, Err(e)) => panic!("line {}: CPython accepts {:?} but we reject it: {e}", i + 1, case.src),
            (false, Ok(v)) => panic!("line {}: CPython rejects {:?} but we read {v:?}", i + 1, case.src),
        }
        checked += 1;
    }
    assert!(checked >= 440, "fixture shrank to {checked} cases");
}

/// Characters that stress quoting and escaping.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec!['\'', '"', '\\', '\n', '\r', '\t', '\0', '\x07', '\x7f', ' ', '#', '[', ']', ',']),
        any::<char>(),
        prop::char::range('a', 'z'),
    ]
}

/// Python's repr, with every non-ASCII character optionally written as a \x/\u/\U escape: the
/// parse must give the same list either way (repr keeps printable characters and escapes the
/// others; which ones are "printable" depends on the Unicode version, so both forms are tested).
fn repr_with_escapes(items: &[String], escape_mask: &[bool]) -> String {
    let plain = python_repr_list(items);
    let mut out = String::new();
    for (i, c) in plain.chars().enumerate() {
        let code = c as u32;
        if code > 0x7f && escape_mask[i % escape_mask.len()] {
            match code {
                0..=0xff => out.push_str(&format!("\\x{code:02x}")),
                0x100..=0xffff => out.push_str(&format!("\\u{code:04x}")),
                _ => out.push_str(&format!("\\U{code:08x}")),
            }
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trips_python_repr(
        items in prop::collection::vec(prop::collection::vec(tricky_char(), 0..16).prop_map(|v| v.into_iter().collect::<String>()), 0..6),
        mask in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let src = repr_with_escapes(&items, &mask);
        prop_assert_eq!(parse_str_list(&src).unwrap(), items);
    }

    #[test]
    fn never_panics_on_arbitrary_text(s in ".{0,64}") {
        let _ = parse_str_list(&s);
    }

    #[test]
    fn never_panics_on_mutated_literals(
        items in prop::collection::vec("[ -~]{0,8}", 1..4),
        cut in 0usize..64,
        insert in prop::sample::select(vec!['\\', '\'', '"', '[', ']', ',', 'N', '{', 'x', 'u']),
    ) {
        let mut chars: Vec<char> = python_repr_list(&items).chars().collect();
        let at = cut.min(chars.len());
        chars.insert(at, insert);
        let _ = parse_str_list(&chars.iter().collect::<String>());
    }
}
