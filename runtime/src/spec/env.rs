//! `${VAR}` and `${VAR:-default}` interpolation of the spec text, before YAML parsing, so that
//! every value (paths, URLs, numbers) can come from the environment. `$${` escapes a literal
//! `${`. Comment lines are left alone. A missing variable without a default is an error that
//! names the variable and where it is used; the value itself is never echoed.

/// Where an interpolation went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `text` using `lookup`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (line_idx, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut col = 1usize;
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
                errors.push(EnvError {
                    line: line_idx + 1,
                    column: col,
                    message: "unterminated `${`: expected `${NAME}` or `${NAME:-default}`".into(),
                });
                out.push_str(after);
                rest = "";
                break;
            };
            match resolve(&after[2..end], lookup) {
                Ok(v) => out.push_str(&v),
                Err(message) => errors.push(EnvError {
                    line: line_idx + 1,
                    column: col,
                    message,
                }),
            }
            col += after[..=end].chars().count();
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
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
/// references (`${CHECKPOINT_URL:-${OUT_URL:-data}/checkpoints}`).
fn resolve(inner: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let valid_name = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid_name {
        return Err(format!(
            "invalid environment variable reference `${{{inner}}}`: names are letters, digits and `_`"
        ));
    }
    match (lookup(name), default) {
        (Some(v), _) if !v.is_empty() || default.is_none() => Ok(v),
        (_, Some(d)) => interpolate(d, lookup).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
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
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let got = interpolate(
            "a: ${OUT}/bars\nb: ${NOPE:-x}\nc: ${EMPTY:-d}\nd: $${OUT}\ne: 5$\n",
            &env,
        )
        .unwrap();
        assert_eq!(got, "a: /tmp/out/bars\nb: x\nc: d\nd: ${OUT}\ne: 5$\n");
    }

    #[test]
    fn defaults_may_nest_references() {
        let got = interpolate(
            "a: ${NOPE:-${OUT}/chk}\nb: ${NOPE:-${NADA:-data}/chk}\nc: ${OUT:-${NADA}}\n",
            &env,
        )
        .unwrap();
        assert_eq!(got, "a: /tmp/out/chk\nb: data/chk\nc: /tmp/out\n");
        let err = interpolate("x: ${NOPE:-${NADA}/chk}\n", &env).unwrap_err();
        assert!(err[0].message.contains("`NADA` is not set"), "{err:?}");
        assert_eq!((err[0].line, err[0].column), (1, 4));
    }

    #[test]
    fn leaves_comments_alone() {
        assert_eq!(interpolate("# ${NOPE}\n", &env).unwrap(), "# ${NOPE}\n");
    }

    #[test]
    fn missing_variables_are_reported_with_position() {
        let errs =
            interpolate("name: x\npath: ${TRADES_FILE}\nurl: ${A} ${B}\n", &env).unwrap_err();
        assert_eq!(errs.len(), 3);
        assert_eq!((errs[0].line, errs[0].column), (2, 7));
        assert!(errs[0].message.contains("`TRADES_FILE` is not set"));
        assert_eq!((errs[2].line, errs[2].column), (3, 11));
    }
}
