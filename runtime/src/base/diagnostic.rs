//! A validation error with its place in the spec: `FILE:LINE:COL: path.to.field: message`.

use std::fmt;

/// One problem found in a spec. `line`/`column` are 1-based; 0 means unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field (`steps.bars.window.size`), empty for the document.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            line: 0,
            column: 0,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = line;
        self.column = column;
        self
    }

    /// Renders the diagnostic for `file` as one line.
    pub fn render(&self, file: &str) -> String {
        let path = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.path)
        };
        visible(&format!(
            "{file}:{}:{}: {path}{}",
            self.line, self.column, self.message
        ))
    }
}

/// `text` with control characters and bidirectional overrides written as `\u{XXXX}`: a name in
/// a spec cannot reorder or hide what a terminal shows of a report.
pub fn visible(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("<spec>"))
    }
}

/// Every problem found in a spec, in document order.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&d.render(&self.file))?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// "did you mean `x`?" for the closest of `choices` to `word`, when one is close enough.
pub fn did_you_mean<'a>(word: &str, choices: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    choices
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ", did you mean `x`?" or ", valid choices: `a`, `b`" (or nothing when there are no choices).
pub fn suggest<'a>(word: &str, choices: impl IntoIterator<Item = &'a str> + Clone) -> String {
    if let Some(best) = did_you_mean(word, choices.clone()) {
        return format!("; did you mean `{best}`?");
    }
    let all: Vec<String> = choices.into_iter().map(|c| format!("`{c}`")).collect();
    if all.is_empty() {
        String::new()
    } else {
        format!("; valid choices: {}", all.join(", "))
    }
}
