//! A document's fields composed from its data row, as a task file names them: a column
//! (`question`), a nested field (`mc1_targets.choices`), or a Jinja template
//! (`Q: {{ question }}\nA:`), the form of lm-eval's `doc_to_text` / `doc_to_choice` /
//! `doc_to_target`.
//!
//! Templates are data, never code: they run in minijinja, a sandboxed engine with no access to
//! files, the network or the host language, with a fuel limit so that no template can loop
//! without end. lm-eval renders with jinja2 (`StrictUndefined`, `keep_trailing_newline=True`);
//! the same settings here, and Python's string methods (`.strip()`, `.split()`, …) through
//! minijinja's pycompat layer. Where lm-eval renders a list or a number to text and reads it
//! back with `ast.literal_eval` (`doc_to_choice: "{{[a, b]}}"`, `doc_to_target: "{{label}}"`),
//! a template that is one `{{ expression }}` is evaluated to its value directly, which gives
//! the same list or number without the round trip through Python's text form.
//!
//! Besides the row's columns, a template sees `doc` (the whole row, for column names that are not
//! identifiers: `doc['Best Answer']`) and two pure functions for answer lists kept in one text
//! field: `split_answers(text)` (TruthfulQA's `split_multi_answer`: split at `;`, strip, drop
//! empty ones, end each with `.`) and `repeat(value, n)` (a list of n copies).
//!
//! Known difference: inside *text*, jinja2 writes Python's forms of non-text values (`True`,
//! `None`, `['a']`) where minijinja writes `true`, `none`, `["a"]`; text templates over text
//! fields (every task here) render identically.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

/// The work one rendering may do (minijinja's fuel: about one unit per instruction). Far above
/// any prompt template's needs (lm-eval's longest, TruthfulQA's primer, uses a few hundred).
const FUEL: u64 = 200_000;

/// Whether a field spec is a template rather than a column name.
pub fn is_template(spec: &str) -> bool {
    spec.contains("{{") || spec.contains("{%")
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("split_answers", split_answers);
        env.add_function("repeat", |value: minijinja::Value, n: usize| vec![value; n.min(100_000)]);
        env
    })
}

/// TruthfulQA's `split_multi_answer(ans, sep=';', close=True)`.
fn split_answers(text: String) -> Vec<String> {
    text.trim()
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| if a.ends_with('.') { a.to_string() } else { format!("{a}.") })
        .collect()
}

/// The template's variables: the row's columns, and the row itself as `doc` (unless a column
/// has that name).
fn context(row: &Map<String, Value>) -> Map<String, Value> {
    let mut ctx = row.clone();
    if !ctx.contains_key("doc") {
        ctx.insert("doc".into(), Value::Object(row.clone()));
    }
    ctx
}

/// Checks a template's syntax once, when the task file is read (an error names the problem and
/// its line within the template).
pub fn check(spec: &str) -> Result<(), String> {
    if !is_template(spec) {
        return Ok(());
    }
    match single_expression(spec) {
        Some(expr) => environment().compile_expression(expr).map(drop),
        None => environment().template_from_str(spec).map(drop),
    }
    .map_err(|e| describe(&e))
}

/// The value a field spec gives for `row`: the column's or nested field's value, or the
/// template's (a one-expression template's value as it is, any other template's text).
pub fn value(spec: &str, row: &Map<String, Value>) -> Result<Value, String> {
    if !is_template(spec) {
        return lookup(spec, row);
    }
    let env = environment();
    if let Some(expr) = single_expression(spec) {
        let compiled = env.compile_expression(expr).map_err(|e| describe(&e))?;
        let v = compiled.eval(context(row)).map_err(|e| describe(&e))?;
        return serde_json::to_value(&v).map_err(|e| format!("the template's value cannot be used: {e}"));
    }
    render(spec, row).map(Value::String)
}

/// A template's text for `row` (also for a one-expression template: its value as text).
pub fn render(spec: &str, row: &Map<String, Value>) -> Result<String, String> {
    let template = environment().template_from_str(spec).map_err(|e| describe(&e))?;
    template.render(context(row)).map_err(|e| describe(&e))
}

/// A column of `row`, or a nested field by dots (`mc1_targets.choices`; a top-level column whose
/// name has a dot wins). A missing one names what is there.
pub fn lookup(path: &str, row: &Map<String, Value>) -> Result<Value, String> {
    if let Some(v) = row.get(path) {
        return Ok(v.clone());
    }
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or(path);
    let Some(mut v) = row.get(first) else {
        let mut present: Vec<&str> = row.keys().map(String::as_str).filter(|k| !k.is_empty()).collect();
        present.sort_unstable();
        return Err(format!("missing column (columns present: {})", present.join(", ")));
    };
    let mut walked = first.to_string();
    for part in parts {
        let next = match v {
            Value::Object(m) => m.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        let Some(next) = next else {
            let there = match v {
                Value::Object(m) => format!("it has {}", m.keys().cloned().collect::<Vec<_>>().join(", ")),
                other => format!("it is {}", crate::read::describe_value(other)),
            };
            return Err(format!("`{walked}` has no field `{part}` ({there})"));
        };
        walked = format!("{walked}.{part}");
        v = next;
    }
    Ok(v.clone())
}

/// `{{ expr }}` with nothing around it: the expression.
fn single_expression(spec: &str) -> Option<&str> {
    let inner = spec.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner).strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner.trim())
}

/// A template error as one line: what, and where within the template.
fn describe(e: &minijinja::Error) -> String {
    let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    match e.line() {
        Some(line) => format!("template error (line {line} of the template): {what}"),
        None => format!("template error: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn columns_nested_fields_and_templates() {
        let r = row(r#"{"question": "Why?", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 0]}, "a": " (A)", "b": " (B)"}"#);
        assert_eq!(value("question", &r).unwrap(), Value::from("Why?"));
        assert_eq!(value("mc1_targets.choices", &r).unwrap(), serde_json::json!(["a", "b"]));
        assert_eq!(value("{{mc1_targets.choices}}", &r).unwrap(), serde_json::json!(["a", "b"]));
        assert_eq!(value("{{[a, b]}}", &r).unwrap(), serde_json::json!([" (A)", " (B)"]));
        assert_eq!(value("{{ mc1_targets.labels[0] }}", &r).unwrap(), Value::from(1));
        // lm-eval's TruthfulQA form: a `set`, string concatenation with `+`, escapes.
        let t = "{% set p = 'Q: x\\nA: y' %}{{p + '\\n\\nQ: ' + question + '\\nA:'}}";
        assert_eq!(value(t, &r).unwrap(), Value::from("Q: x\nA: y\n\nQ: Why?\nA:"));
        assert_eq!(render("Q: {{ question.strip().lower() }}\n", &r).unwrap(), "Q: why?\n");
    }

    #[test]
    fn answer_lists_in_one_text_field_as_truthfulqa_splits_them() {
        let r = row(r#"{"Best Answer": "It is blue", "Correct Answers": "Blue; It is blue.;  ; Sky-blue", "Incorrect Answers": "Green"}"#);
        let classes = value("{{ split_answers(doc['Correct Answers']) + split_answers(doc['Incorrect Answers']) }}", &r).unwrap();
        assert_eq!(classes, serde_json::json!(["Blue.", "It is blue.", "Sky-blue.", "Green."]));
        let labels = value("{{ repeat(1, split_answers(doc['Correct Answers'])|length) + repeat(0, split_answers(doc['Incorrect Answers'])|length) }}", &r).unwrap();
        assert_eq!(labels, serde_json::json!([1, 1, 1, 0]));
        assert_eq!(value("{{ split_answers(doc['Best Answer']) }}", &r).unwrap(), serde_json::json!(["It is blue."]));
    }

    #[test]
    fn errors_say_what_is_missing_and_bad_templates_are_refused() {
        let r = row(r#"{"question": "Why?", "t": {"x": 1}}"#);
        assert!(value("answer", &r).unwrap_err().contains("columns present: question, t"));
        assert!(value("t.y", &r).unwrap_err().contains("`t` has no field `y` (it has x)"));
        // Strict: an unknown variable is an error, not an empty string.
        assert!(value("Q: {{ nope }}", &r).unwrap_err().contains("undefined"), "{}", value("Q: {{ nope }}", &r).unwrap_err());
        assert!(check("{{ question ").is_err());
        assert!(check("{% for %}").unwrap_err().contains("line 1"));
        // No template can run without end.
        let endless = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        assert!(render(endless, &r).unwrap_err().contains("fuel"), "{}", render(endless, &r).unwrap_err());
    }
}
