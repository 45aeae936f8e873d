//! Reading numbers from a step's `config:` (JSON) without pulling a JSON library into every
//! plugin: `{"alpha": 0.1, "weights": [0.2, -1.5]}`. Only top-level keys are looked up.

/// The number `name`, or `default` when absent.
pub fn number(config: &str, name: &str, default: f64) -> Result<f64, String> {
    match value(config, name) {
        None => Ok(default),
        Some(v) => parse_number(v)
            .ok_or_else(|| format!("config `{name}`: expected a number, got `{}`", short(v))),
    }
}

/// The list of numbers `name`, if present.
pub fn numbers(config: &str, name: &str) -> Result<Option<Vec<f64>>, String> {
    let Some(v) = value(config, name) else {
        return Ok(None);
    };
    let inner = v
        .strip_prefix('[')
        .and_then(|v| v.split(']').next())
        .ok_or_else(|| {
            format!(
                "config `{name}`: expected a list of numbers, got `{}`",
                short(v)
            )
        })?;
    if inner.trim().is_empty() {
        return Ok(Some(Vec::new()));
    }
    inner
        .split(',')
        .map(|x| {
            parse_number(x)
                .ok_or_else(|| format!("config `{name}`: expected numbers, got `{}`", short(x)))
        })
        .collect::<Result<Vec<f64>, String>>()
        .map(Some)
}

fn parse_number(v: &str) -> Option<f64> {
    let v = v.trim();
    let end = v.find([',', '}', ']']).unwrap_or(v.len());
    v[..end].trim().parse().ok().filter(|x: &f64| x.is_finite())
}

/// The text after `"name":` at the top level of the object.
fn value<'a>(config: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\"");
    let mut depth = 0i32;
    let mut in_string = false;
    let bytes = config.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' if !in_string && depth == 1 && config[i..].starts_with(&key) => {
                let rest = config[i + key.len()..].trim_start();
                if let Some(rest) = rest.strip_prefix(':') {
                    return Some(rest.trim_start());
                }
                in_string = true;
            }
            b'"' => in_string = !in_string,
            b'{' | b'[' if !in_string => depth += 1,
            b'}' | b']' if !in_string => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn short(v: &str) -> &str {
    let end = v.find([',', '}']).unwrap_or(v.len()).min(40);
    v[..end].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_top_level_numbers_and_lists() {
        let c = r#"{"alpha": 0.25, "nested": {"alpha": 9}, "weights": [1, -2.5, 3e-1], "s": "x"}"#;
        assert_eq!(number(c, "alpha", 1.0), Ok(0.25));
        assert_eq!(number(c, "missing", 7.0), Ok(7.0));
        assert_eq!(numbers(c, "weights"), Ok(Some(vec![1.0, -2.5, 0.3])));
        assert_eq!(numbers(c, "none"), Ok(None));
        assert!(number(c, "s", 0.0).unwrap_err().contains("config `s`"));
        assert!(number(r#"{"a": [1]}"#, "a", 0.0).is_err());
        assert!(
            numbers(r#"{"w": [1, "x"]}"#, "w")
                .unwrap_err()
                .contains("`w`")
        );
    }
}
