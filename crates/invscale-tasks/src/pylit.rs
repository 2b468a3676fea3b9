//! A parser for Python list-of-string literals, the form of the `classes` column in the prize
//! release files (`"[' Y', ' N']"`), written by Python's `repr` and read back by the prize's
//! pipeline with `ast.literal_eval`.
//!
//! It accepts what `ast.literal_eval` accepts for a list of `str`: both quote styles, triple
//! quotes, `r`/`u` prefixes, implicit concatenation of adjacent literals, comments, newlines
//! and a trailing comma inside the brackets, and every escape of Python string literals
//! (`\\ \' \" \a \b \f \n \r \t \v`, octal `\ooo`, `\xhh`, `\uhhhh`, `\Uhhhhhhhh`, `\N{name}`,
//! backslash-newline, and unknown escapes kept verbatim as Python does). Anything else (bytes,
//! f-strings, numbers, `None`, tuples, unbalanced brackets) is an error that quotes the text.
//!
//! One deliberate difference: Python keeps a `\ud83d\ude00` surrogate pair as two lone
//! surrogates, which no tokenizer can encode; here a high/low pair becomes the character it
//! encodes, and a lone surrogate is an error.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyLitError {
    /// 1-based column (in characters) where the problem is.
    pub column: usize,
    pub message: String,
    /// The literal, as given.
    pub text: String,
}

impl fmt::Display for PyLitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at column {} of the Python list literal {}", self.message, self.column, quote_excerpt(&self.text))
    }
}

impl std::error::Error for PyLitError {}

/// The literal quoted for an error message, shortened when long (Rust's escapes make control
/// characters visible).
fn quote_excerpt(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", text.chars().count())
    }
}

/// Parses a Python list literal whose items are all string literals.
pub fn parse_str_list(text: &str) -> Result<Vec<String>, PyLitError> {
    let mut p = Parser { chars: text.chars().collect(), pos: 0, text };
    p.skip_blank();
    match p.peek() {
        Some('[') => p.pos += 1,
        Some(c) => return Err(p.error(format!("expected `[` (a list) but found {c:?}"))),
        None => return Err(p.error("expected a list like ['a', 'b'] but the text is empty".into())),
    }
    let mut items = Vec::new();
    loop {
        p.skip_blank();
        match p.peek() {
            Some(']') => {
                p.pos += 1;
                break;
            }
            None => return Err(p.error("unclosed `[`: the list has no closing `]`".into())),
            Some(_) => items.push(p.string_items()?),
        }
        p.skip_blank();
        match p.peek() {
            Some(',') => p.pos += 1,
            Some(']') => {}
            Some(c) => return Err(p.error(format!("expected `,` or `]` after a list item but found {c:?}"))),
            None => return Err(p.error("unclosed `[`: the list has no closing `]`".into())),
        }
    }
    p.skip_blank();
    if let Some(c) = p.peek() {
        return Err(p.error(format!("unexpected {c:?} after the closing `]`")));
    }
    Ok(items)
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }
    fn error(&self, message: String) -> PyLitError {
        self.error_at(self.pos, message)
    }
    fn error_at(&self, pos: usize, message: String) -> PyLitError {
        PyLitError { column: pos + 1, message, text: self.text.to_string() }
    }

    /// Whitespace, newlines and `#` comments (all legal inside brackets).
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else if c.is_whitespace() || c == '\x0c' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// One list item: one or more adjacent string literals, concatenated.
    fn string_items(&mut self) -> Result<String, PyLitError> {
        let mut value = self.string_literal()?;
        loop {
            let save = self.pos;
            self.skip_blank();
            if self.at_string_start() {
                value.push_str(&self.string_literal()?);
            } else {
                self.pos = save;
                return Ok(value);
            }
        }
    }

    fn at_string_start(&self) -> bool {
        let mut i = 0;
        while i < 2 && self.peek_at(i).is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 1;
        }
        matches!(self.peek_at(i), Some('\'' | '"'))
    }

    fn string_literal(&mut self) -> Result<String, PyLitError> {
        let start = self.pos;
        let mut prefix = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphabetic()) {
            prefix.push(c.to_ascii_lowercase());
            self.pos += 1;
        }
        let raw = match prefix.as_str() {
            "" | "u" => false,
            "r" => true,
            p if p.contains('b') => {
                return Err(self.error_at(start, "a bytes literal is not a string: class names must be text".into()));
            }
            p if p.contains('f') || p.contains('t') => {
                return Err(self.error_at(start, "an f-string is code, not data: only plain string literals are read".into()));
            }
            _ if matches!(self.peek(), Some('\'' | '"')) => {
                return Err(self.error_at(start, format!("`{prefix}` is not a valid string prefix (only r and u are)")));
            }
            _ => {
                let word: String = self.chars[start..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
                let what = match word.as_str() {
                    "None" => "None".to_string(),
                    "True" | "False" => format!("the boolean {word}"),
                    _ => format!("`{word}`"),
                };
                return Err(self.error_at(start, format!("expected a string literal but found {what}")));
            }
        };
        let Some(quote @ ('\'' | '"')) = self.peek() else {
            let found = self.peek().map(|c| format!("{c:?}")).unwrap_or_else(|| "the end".into());
            let hint = match self.peek() {
                Some('[' | '(' | '{') => " (nested containers are not allowed)",
                Some(c) if c.is_ascii_digit() || c == '-' || c == '.' => " (numbers are not class names; quote them)",
                _ => "",
            };
            return Err(self.error_at(start, format!("expected a string literal but found {found}{hint}")));
        };
        let triple = self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(start, "unterminated string: no closing quote".into()));
            };
            if c == quote && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote))) {
                self.pos += if triple { 3 } else { 1 };
                return Ok(out);
            }
            if (c == '\n' || c == '\r') && !triple {
                return Err(self.error_at(start, "unterminated string: a line break inside a '…' string".into()));
            }
            if c != '\\' {
                out.push(c);
                self.pos += 1;
                continue;
            }
            // A backslash.
            let Some(next) = self.peek_at(1) else {
                return Err(self.error_at(start, "unterminated string: it ends in a backslash".into()));
            };
            if raw {
                // In raw strings a backslash escapes nothing, but still keeps the quote after it
                // from ending the string.
                out.push('\\');
                out.push(next);
                self.pos += 2;
                continue;
            }
            let escape_at = self.pos;
            self.pos += 2;
            match next {
                '\n' => {}
                '\r' => {
                    if self.peek() == Some('\n') {
                        self.pos += 1;
                    }
                }
                '\\' | '\'' | '"' => out.push(next),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut value = next.to_digit(8).unwrap();
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                value = value * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(value).expect("octal escapes stay below 0o777"));
                }
                'x' => out.push(self.hex_escape(escape_at, 2)?),
                'u' => out.push(self.hex_escape(escape_at, 4)?),
                'U' => out.push(self.hex_escape(escape_at, 8)?),
                'N' => out.push(self.named_escape(escape_at)?),
                _ => {
                    // Python keeps unknown escapes as they are (with a warning).
                    out.push('\\');
                    out.push(next);
                }
            }
        }
    }

    fn hex_escape(&mut self, escape_at: usize, digits: usize) -> Result<char, PyLitError> {
        let code = self.hex_digits(escape_at, digits)?;
        if (0xD800..0xDC00).contains(&code) {
            // A high surrogate: only a following \uDC00-\uDFFF makes it a character.
            let save = self.pos;
            if self.peek() == Some('\\') && self.peek_at(1) == Some('u') {
                self.pos += 2;
                if let Ok(low @ 0xDC00..=0xDFFF) = self.hex_digits(save, 4) {
                    let combined = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    return Ok(char::from_u32(combined).expect("surrogate pairs combine to valid chars"));
                }
            }
            self.pos = save;
        }
        char::from_u32(code).ok_or_else(|| {
            let what = if code > 0x10FFFF { "beyond U+10FFFF, the last code point" } else { "a lone surrogate, not text" };
            self.error_at(escape_at, format!("escape {} is {what}", self.excerpt(escape_at)))
        })
    }

    fn hex_digits(&mut self, escape_at: usize, digits: usize) -> Result<u32, PyLitError> {
        let mut code = 0u32;
        for i in 0..digits {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    code = code * 16 + d;
                    self.pos += 1;
                }
                None => {
                    let kind = self.chars[escape_at + 1];
                    return Err(self.error_at(
                        escape_at,
                        format!("escape \\{kind} needs exactly {digits} hex digits, found {i} in {}", self.excerpt(escape_at)),
                    ));
                }
            }
        }
        Ok(code)
    }

    fn named_escape(&mut self, escape_at: usize) -> Result<char, PyLitError> {
        if self.peek() != Some('{') {
            return Err(self.error_at(escape_at, "escape \\N must be followed by {NAME}".into()));
        }
        let name_start = self.pos + 1;
        let Some(len) = self.chars[name_start..].iter().position(|&c| c == '}' || c == '\n') else {
            return Err(self.error_at(escape_at, "escape \\N{… has no closing `}`".into()));
        };
        if self.chars[name_start + len] != '}' {
            return Err(self.error_at(escape_at, "escape \\N{… has no closing `}`".into()));
        }
        let name: String = self.chars[name_start..name_start + len].iter().collect();
        self.pos = name_start + len + 1;
        // No name starts with a hyphen; unicode_names2 2.0 reads the byte before a leading one
        // (`bytes.get(i - 1)` at i = 0: an overflow, found by fuzzing).
        if name.trim_start().starts_with('-') {
            return Err(self.error_at(escape_at, format!("\\N{{{name}}} names no Unicode character")));
        }
        unicode_names2::character(&name)
            .ok_or_else(|| self.error_at(escape_at, format!("\\N{{{name}}} names no Unicode character")))
    }

    fn excerpt(&self, at: usize) -> String {
        let end = self.pos.max(at + 2).min(self.chars.len());
        self.chars[at..end].iter().collect::<String>()
    }
}

/// Python's `repr` of a list of strings, the way the release files were written. Used to
/// show classes to users in the form they know, and by tests.
pub fn python_repr_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| python_repr_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`; `\\`, the quote,
/// `\t \n \r` escaped; other control characters as `\xhh`. Non-ASCII printable text is kept.
pub fn python_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Vec<String> {
        parse_str_list(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    #[test]
    fn release_file_forms() {
        assert_eq!(ok("[' Y', ' N']"), [" Y", " N"]);
        assert_eq!(ok(r#"[" it's", ' no']"#), [" it's", " no"]);
        assert_eq!(ok("[]"), Vec::<String>::new());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_str_list("[' Y', 1]").unwrap_err();
        assert_eq!(e.column, 8);
        assert!(e.to_string().contains("numbers are not class names"), "{e}");
        let e = parse_str_list("['\\x4', ' N']").unwrap_err();
        assert_eq!(e.column, 3);
        assert!(e.to_string().contains("\\x needs exactly 2 hex digits"), "{e}");
        assert!(e.to_string().contains("['\\\\x4', ' N']"), "{e}");
        let e = parse_str_list("[' Y', ' N'").unwrap_err();
        assert!(e.message.contains("no closing `]`"), "{e}");
    }

    #[test]
    fn surrogate_pairs_combine_and_lone_ones_are_errors() {
        assert_eq!(ok("['\\ud83d\\ude00']"), ["\u{1F600}"]);
        let e = parse_str_list("['\\ud83d']").unwrap_err();
        assert!(e.message.contains("lone surrogate"), "{e}");
    }
}
