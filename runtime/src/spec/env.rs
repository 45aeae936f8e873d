//! `${VAR}` and `${VAR:-default}` interpolation, applied to the scalar values of the parsed YAML
//! tree (never to the text before parsing): a value from the environment is always exactly one
//! scalar, whatever it contains (newlines, ` #`, `: `, quotes, `{`), and comments are never
//! interpolated. `$${` escapes a literal `${`. A plain (unquoted) scalar that is one reference
//! takes the type of its value (`rate: ${RATE:-200}` is a number); a quoted one stays a string.
//! A missing variable without a default is an error that names the variable and where it is
//! used; the value itself is never echoed.

use super::tree::{Node, Pos};

/// Before parsing, every `${...}` in the text is swapped for a placeholder of private-use
/// characters (as many characters as the reference, so positions stay right): a reference
/// inside a flow mapping (`window: {size: ${SIZE}}`) would otherwise read as YAML braces.
/// The placeholders are swapped back in the parsed scalars, then interpolated.
const MARK: char = '\u{E000}';
const PAD: char = '\u{E001}';
/// Hex digits of a placeholder's index: U+E010..U+E01F.
const DIGIT0: u32 = 0xE010;

/// The spec text with each `${...}` (and `$${...}`) replaced by a placeholder, and the
/// references in order.
pub fn protect(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        let start = if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            pos - 1
        } else {
            pos
        };
        let Some(end) = closing_brace(&rest[pos..]) else {
            break;
        };
        let original = &rest[start..pos + end + 1];
        out.push_str(&rest[..start]);
        let index = refs.len();
        out.push(MARK);
        let mut digits: Vec<char> = format!("{index:x}")
            .chars()
            .map(|d| char::from_u32(DIGIT0 + d.to_digit(16).unwrap_or(0)).unwrap_or(PAD))
            .collect();
        // Pad to the reference's length (in characters) so columns after it do not move.
        while 1 + digits.len() < original.chars().count() {
            digits.insert(0, PAD);
        }
        out.extend(digits);
        refs.push(original.to_string());
        rest = &rest[pos + end + 1..];
    }
    out.push_str(rest);
    (out, refs)
}

/// `s` with its placeholders (from [`protect`]) swapped back for the references.
fn restore(s: &str, refs: &[String]) -> String {
    if !s.contains(MARK) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != MARK {
            out.push(c);
            continue;
        }
        let mut index = 0usize;
        while let Some(&d) = chars.peek() {
            if d == PAD {
                chars.next();
            } else if (DIGIT0..DIGIT0 + 16).contains(&(d as u32)) {
                index = index * 16 + (d as u32 - DIGIT0) as usize;
                chars.next();
            } else {
                break;
            }
        }
        match refs.get(index) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    out
}

/// How deeply defaults may nest references (`${A:-${B:-${C}}}` is 3).
pub const MAX_NESTING: usize = 16;

/// Where an interpolation went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// Dotted path of the scalar (`sinks.bars.path`).
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Interpolates every string scalar below `root` (keys are left alone). `text` is the spec the
/// tree was parsed from: it tells plain scalars from quoted ones.
pub fn interpolate_tree(
    root: &mut Node,
    root_pos: Pos,
    text: &str,
    refs: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<EnvError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut errors = Vec::new();
    let mut path = Vec::new();
    let cx = Walk {
        lines: &lines,
        refs,
        lookup,
    };
    walk(root, root_pos, &cx, &mut path, &mut errors);
    errors
}

struct Walk<'a> {
    lines: &'a [&'a str],
    refs: &'a [String],
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

fn walk(node: &mut Node, pos: Pos, cx: &Walk, path: &mut Vec<String>, errors: &mut Vec<EnvError>) {
    let (lines, lookup) = (cx.lines, cx.lookup);
    match node {
        Node::Map(entries) => {
            for (_, key, vp, value) in entries.iter_mut() {
                if key.contains(MARK) {
                    *key = restore(key, cx.refs);
                }
                path.push(key.clone());
                walk(value, *vp, cx, path, errors);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for (i, (p, value)) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                walk(value, *p, cx, path, errors);
                path.pop();
            }
        }
        Node::Str(s) if s.contains(MARK) || s.contains('$') => {
            *s = restore(s, cx.refs);
            let first = lines
                .get(pos.line.wrapping_sub(1))
                .and_then(|l| l.chars().nth(pos.column.wrapping_sub(1)));
            let quoted = matches!(first, Some('"' | '\''));
            let block = matches!(first, Some('|' | '>'));
            match interpolate(s, lookup) {
                Ok(value) => {
                    let typed = !quoted && !block && is_one_reference(s);
                    *node = if typed {
                        plain_scalar(value)
                    } else {
                        Node::Str(value)
                    };
                }
                Err(errs) => {
                    // Columns inside a one-line scalar; elsewhere the scalar's own position.
                    let inline = !block && !s.contains('\n');
                    for (offset, message) in errs {
                        let column = if inline {
                            pos.column + offset + usize::from(quoted)
                        } else {
                            pos.column
                        };
                        errors.push(EnvError {
                            path: path.join("."),
                            line: pos.line,
                            column,
                            message,
                        });
                    }
                }
            }
        }
        _ => {}
    }
}

/// Whether `s` is exactly one `${...}` reference.
fn is_one_reference(s: &str) -> bool {
    s.starts_with("${") && closing_brace(s) == Some(s.len() - 1)
}

/// A plain scalar's value typed as YAML's core schema would (integers, floats, booleans).
fn plain_scalar(value: String) -> Node {
    if let Ok(i) = value.parse::<i64>() {
        return Node::Int(i);
    }
    let numeric = value
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && value.bytes().any(|b| b.is_ascii_digit());
    if numeric && let Ok(f) = value.parse::<f64>() {
        return Node::Float(f);
    }
    match value.as_str() {
        "true" => Node::Bool(true),
        "false" => Node::Bool(false),
        _ => Node::Str(value),
    }
}

/// Replaces every `${VAR}` / `${VAR:-default}` in one scalar using `lookup`. Errors come with
/// the character offset of their `${` in `text`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    interpolate_at(text, lookup, 0)
}

fn interpolate_at(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut col = 0usize;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        col += rest[..pos].chars().count();
        let after = &rest[pos..];
        if after.starts_with("$${") {
            out.push_str("${");
            rest = &after[3..];
            col += 3;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            col += 1;
            continue;
        }
        let Some(end) = closing_brace(after) else {
            errors.push((
                col,
                "unterminated `${`: expected `${NAME}` or `${NAME:-default}`".into(),
            ));
            rest = "";
            break;
        };
        match resolve(&after[2..end], lookup, depth) {
            Ok(v) => out.push_str(&v),
            Err(message) => errors.push((col, message)),
        }
        col += after[..=end].chars().count();
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The index of the `}` closing the `${` at the start of `s` (defaults may nest references).
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// The value of one reference `NAME` or `NAME:-default`; the default may itself contain
/// references (`${CHECKPOINT_URL:-${OUT_URL:-data}/checkpoints}`), up to [`MAX_NESTING`] deep.
fn resolve(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let valid_name = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid_name {
        let shown: String = inner.chars().take(40).collect();
        let more = if inner.chars().count() > 40 {
            "..."
        } else {
            ""
        };
        return Err(format!(
            "invalid environment variable reference `${{{shown}{more}}}`: names are letters, digits and `_`"
        ));
    }
    match (lookup(name), default) {
        (Some(v), _) if !v.is_empty() || default.is_none() => Ok(v),
        (_, Some(_)) if depth + 1 >= MAX_NESTING => Err(format!(
            "defaults nest more than {MAX_NESTING} references deep (at `{name}`)"
        )),
        (_, Some(d)) => interpolate_at(d, lookup, depth + 1).map_err(|errors| {
            let mut msgs: Vec<String> = errors.into_iter().map(|(_, m)| m).collect();
            msgs.dedup();
            msgs.join("; ")
        }),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (set it, or write `${{{name}:-default}}`)"
        )),
        (Some(_), None) => unreachable!("covered by the first arm"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OUT" => Some("/tmp/out".into()),
            "EMPTY" => Some(String::new()),
            "NL" => Some("out\nsinks:\n  evil: {type: parquet}".into()),
            "HASH" => Some("/tmp/a #b".into()),
            "N" => Some("42".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let got = interpolate("${OUT}/bars ${NOPE:-x} ${EMPTY:-d} $${OUT} 5$", &env).unwrap();
        assert_eq!(got, "/tmp/out/bars x d ${OUT} 5$");
    }

    #[test]
    fn defaults_may_nest_references() {
        assert_eq!(
            interpolate("${NOPE:-${OUT}/chk}", &env).unwrap(),
            "/tmp/out/chk"
        );
        assert_eq!(
            interpolate("${NOPE:-${NADA:-data}/chk}", &env).unwrap(),
            "data/chk"
        );
        assert_eq!(interpolate("${OUT:-${NADA}}", &env).unwrap(), "/tmp/out");
        let err = interpolate("${NOPE:-${NADA}/chk}", &env).unwrap_err();
        assert!(err[0].1.contains("`NADA` is not set"), "{err:?}");
        assert_eq!(err[0].0, 0);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 20_000;
        let text = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        let err = interpolate(&text, &env).unwrap_err();
        assert!(err[0].1.contains("nest more than 16"), "{err:?}");
    }

    #[test]
    fn missing_variables_are_reported_with_offsets() {
        let errs = interpolate("${A} ${B}", &env).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[1].0, 5);
        assert!(errs[0].1.contains("`A` is not set"));
    }

    #[test]
    fn values_stay_one_scalar_and_take_plain_types() {
        let text = "a: ${NL}\nb: ${HASH}/x # ${NOPE}\nc: ${N}\nd: \"${N}\"\n# e: ${NOPE}\n";
        let (protected, refs) = protect(text);
        let mut tree = crate::spec::tree::Tree::parse(&protected).unwrap();
        let errs = interpolate_tree(&mut tree.root, tree.root_pos, &protected, &refs, &env);
        assert!(errs.is_empty(), "{errs:?}");
        let json = tree.root.to_json();
        assert_eq!(json["a"], "out\nsinks:\n  evil: {type: parquet}");
        assert_eq!(json["b"], "/tmp/a #b/x");
        assert_eq!(json["c"], 42);
        assert_eq!(json["d"], "42");
        assert_eq!(json.as_object().unwrap().len(), 4);
    }

    #[test]
    fn tree_errors_name_path_and_column() {
        let text =
            "name: x\nsinks:\n  s:\n    path: ${A} ${B}\n    w: {size: ${N}, x: \"${N:-x}\"}\n";
        let (protected, refs) = protect(text);
        let mut tree = crate::spec::tree::Tree::parse(&protected).unwrap();
        let errs = interpolate_tree(&mut tree.root, tree.root_pos, &protected, &refs, &env);
        let json = tree.root.to_json();
        assert_eq!(json["sinks"]["s"]["w"]["size"], 42);
        assert_eq!(json["sinks"]["s"]["w"]["x"], "42");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path, "sinks.s.path");
        assert_eq!((errs[0].line, errs[0].column), (4, 11));
        assert_eq!((errs[1].line, errs[1].column), (4, 16));
    }
}
