//! Reading a spec: environment interpolation, YAML parsing with positions, typed deserialization
//! of each component on its own (so that one broken component does not hide the errors of the
//! others), then planning checks. Every problem comes back as a [`Diagnostic`].

use serde::de::DeserializeOwned;

use super::env::{interpolate_tree, protect};
use super::model::PipelineSpec;
use super::tree::{Node, Tree};
use crate::base::diagnostic::{Diagnostic, SpecErrors, suggest};
use crate::sinks::SinkSpec;
use crate::sources::SourceSpec;
use crate::steps::StepSpec;

/// A spec that parsed, with the tree that locates its fields for later diagnostics.
pub struct LoadedSpec {
    pub file: String,
    pub spec: PipelineSpec,
    pub tree: Tree,
    /// Problems already found (unset environment variables) that do not stop the typed checks:
    /// planning reports them together with its own, so one round shows every error.
    pub pending: Vec<Diagnostic>,
    /// The spec's lines (as parsed), to place errors inside a value (an expression's column).
    lines: Vec<String>,
    /// Components left out of `spec` because their own config is broken (reported in
    /// `pending`): the planner does not call a reference to one of them unknown.
    pub broken: Vec<String>,
}

impl LoadedSpec {
    /// Attaches positions to diagnostics found after parsing (by their dotted path).
    pub fn locate(&self, mut diags: Vec<Diagnostic>) -> SpecErrors {
        // A field whose variable is unset has no value to check: its own errors are noise.
        diags.retain(|d| !self.pending.iter().any(|p| covers(&p.path, &d.path)));
        let mut located = self.locate_only(diags);
        located.diagnostics.extend(self.pending.iter().cloned());
        located.diagnostics.sort_by_key(|d| (d.line, d.column));
        located
    }

    /// Attaches positions to `diags` only (warnings: without the pending errors).
    pub fn locate_only(&self, mut diags: Vec<Diagnostic>) -> SpecErrors {
        for d in &mut diags {
            if d.line > 0 {
                continue;
            }
            // `field@L:C`: a place inside the value (an expression's own line and column).
            let inner = d.path.rsplit_once('@').and_then(|(base, at)| {
                let (l, c) = at.split_once(':')?;
                Some((
                    base.to_string(),
                    l.parse::<usize>().ok()?,
                    c.parse::<usize>().ok()?,
                ))
            });
            if let Some((base, _, _)) = &inner {
                d.path = base.clone();
            }
            let path: Vec<String> = if d.path.is_empty() {
                vec![]
            } else {
                d.path.split('.').map(str::to_string).collect()
            };
            let p = self.tree.locate(&path, false);
            d.line = p.line;
            d.column = p.column;
            if let Some((_, l, c)) = inner
                && p.line > 0
            {
                let line = self.lines.get(p.line - 1).map(String::as_str).unwrap_or("");
                let at = line.get(p.column.saturating_sub(1)..).unwrap_or("");
                if at.starts_with(['|', '>']) {
                    // A block scalar: its text starts on the next line, indented.
                    let first = self.lines.get(p.line).map(String::as_str).unwrap_or("");
                    let indent = first.len() - first.trim_start().len();
                    d.line = p.line + l;
                    d.column = if l == 1 { indent + c } else { c };
                } else if l == 1 {
                    let quoted = at.starts_with(['"', '\'']) as usize;
                    d.column = p.column + quoted + c - 1;
                } else {
                    d.line = p.line + l - 1;
                    d.column = c;
                }
            }
        }
        diags.sort_by_key(|d| (d.line, d.column));
        SpecErrors {
            file: self.file.clone(),
            diagnostics: diags,
        }
    }
}

/// Whether the field at dotted path `outer` is, or contains, the one at `inner`.
fn covers(outer: &str, inner: &str) -> bool {
    inner == outer || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'.'))
}

/// Loads and type-checks a spec file, reading `${VAR}`s from the process environment.
pub fn load_file(path: &str) -> Result<LoadedSpec, SpecErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecErrors {
        file: path.to_string(),
        diagnostics: vec![Diagnostic::new("", format!("cannot read spec: {e}")).at(1, 1)],
    })?;
    load_str(path, &text, &|name| std::env::var(name).ok())
}

/// Loads a spec from text; `file` is only used in messages.
pub fn load_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedSpec, SpecErrors> {
    let fail = |diagnostics: Vec<Diagnostic>| SpecErrors {
        file: file.to_string(),
        diagnostics,
    };
    let (text, refs) = protect(text);
    let mut tree = Tree::parse(&text)
        .map_err(|(p, msg)| fail(vec![Diagnostic::new("", msg).at(p.line, p.column)]))?;
    let pending: Vec<Diagnostic> =
        interpolate_tree(&mut tree.root, tree.root_pos, &text, &refs, env)
            .into_iter()
            .map(|e| Diagnostic::new(e.path, e.message).at(e.line, e.column))
            .collect();
    let Node::Map(top) = &tree.root else {
        return Err(fail(vec![
            Diagnostic::new(
                "",
                "a spec is a mapping with `name`, `sources`, `steps` and `sinks`",
            )
            .at(tree.root_pos.line.max(1), tree.root_pos.column.max(1)),
        ]));
    };

    let mut diags = Vec::new();
    let mut broken: Vec<(&str, String)> = Vec::new();
    // Each component on its own, so every broken one is reported.
    for section in ["sources", "steps", "sinks"] {
        if let Some((_, _, _, Node::Map(entries))) = top.iter().find(|(_, k, _, _)| k == section) {
            for (_, name, _, node) in entries {
                let errors = check_component(section, node);
                if !errors.is_empty() {
                    broken.push((section, name.clone()));
                }
                for (path, msg) in errors {
                    let d = component_diag(&tree, &format!("{section}.{name}"), path, msg);
                    if !pending.iter().any(|p| covers(&p.path, &d.path)) {
                        diags.push(d);
                    }
                }
            }
        }
    }
    // Then the document as a whole (top-level keys, missing sections, dead_letters).
    let mut whole = true;
    if let Err((path, msg)) = check::<PipelineSpec>(&tree.root) {
        let first = path.first().map(String::as_str);
        let inside_component =
            matches!(first, Some("sources" | "steps" | "sinks")) && path.len() >= 2;
        let d = component_diag(&tree, "", path, msg);
        let noise = pending.iter().any(|p| covers(&p.path, &d.path));
        whole = inside_component;
        if !(inside_component && (!diags.is_empty() || !pending.is_empty())) && !noise {
            diags.push(d);
        }
    }
    // Broken components do not hide the planning errors of the others (one round): the spec
    // without them is planned, and their errors come with the planner's.
    if !diags.is_empty() && whole && !broken.is_empty() {
        let mut json = tree.root.to_json();
        let mut emptied = false;
        for (section, name) in &broken {
            if let Some(serde_json::Value::Object(m)) = json.get_mut(*section) {
                m.shift_remove(name.as_str());
                // NB: "needs at least one source" would be noise: there are, broken.
                emptied |= m.is_empty();
            }
        }
        if !emptied && let Ok(spec) = serde_json::from_value::<PipelineSpec>(json) {
            let mut pending = pending;
            pending.extend(diags);
            return Ok(LoadedSpec {
                file: file.to_string(),
                spec,
                tree,
                pending,
                lines: text.lines().map(str::to_string).collect(),
                broken: broken.into_iter().map(|(_, n)| n).collect(),
            });
        }
    }
    if !diags.is_empty() {
        diags.extend(pending);
        diags.sort_by_key(|d| (d.line, d.column));
        diags.dedup();
        return Err(fail(diags));
    }
    let spec = serde_json::from_value::<PipelineSpec>(tree.root.to_json())
        .map_err(|e| fail(vec![Diagnostic::new("", e.to_string()).at(1, 1)]))?;
    Ok(LoadedSpec {
        file: file.to_string(),
        spec,
        tree,
        pending,
        lines: text.lines().map(str::to_string).collect(),
        broken: Vec::new(),
    })
}

use crate::base::kinds::{PathError, check_value};

/// The connector types of each section, with the check of their config. This list is the one
/// place a new connector is registered for validation (the serde enums mirror it).
fn check_typed(section: &str, ty: &str, value: serde_json::Value) -> Option<Result<(), PathError>> {
    match section {
        "sources" => SourceSpec::check_fields(ty, value),
        "steps" => StepSpec::check_fields(ty, value),
        "sinks" => SinkSpec::check_fields(ty, value),
        _ => None,
    }
}

fn types_of(section: &str) -> &'static [&'static str] {
    match section {
        "sources" => SourceSpec::TYPES,
        "steps" => StepSpec::TYPES,
        _ => SinkSpec::TYPES,
    }
}

/// Checks one named component: its `type`, then its fields with exact paths. serde stops at
/// the first error, so each offending field is removed and the check repeated, to report every
/// error of the component (a "missing field" caused by a removal is not reported).
fn check_component(section: &str, node: &Node) -> Vec<PathError> {
    let types = types_of(section);
    let choices = || {
        types
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Node::Map(entries) = node else {
        return vec![(
            vec![],
            format!("expected a mapping with a `type` ({})", choices()),
        )];
    };
    let ty = match entries.iter().find(|(_, k, _, _)| k == "type") {
        Some((_, _, _, Node::Str(t))) => t.clone(),
        Some(_) => {
            return vec![(
                vec!["type".into()],
                format!("`type` must be a string: one of {}", choices()),
            )];
        }
        None => {
            return vec![(
                vec![],
                format!("missing field `type`; valid choices: {}", choices()),
            )];
        }
    };
    let mut value = serde_json::Value::Object(
        entries
            .iter()
            .filter(|(_, k, _, _)| k != "type")
            .map(|(_, k, _, v)| (k.clone(), v.to_json()))
            .collect(),
    );
    let mut errors = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    for _ in 0..32 {
        let (path, msg) = match check_typed(section, &ty, value.clone()) {
            None => {
                return vec![(
                    vec!["type".into()],
                    format!("unknown type `{ty}`{}", suggest(&ty, types.iter().copied())),
                )];
            }
            Some(Ok(())) => break,
            Some(Err(e)) => e,
        };
        let mut target = path.clone();
        if let Some(field) =
            between(&msg, "unknown field `", "`").or_else(|| between(&msg, "missing field `", "`"))
            && target.last().map(String::as_str) != Some(field)
        {
            target.push(field.to_string());
        }
        if msg.starts_with("missing field") {
            if !removed.contains(&target) {
                errors.push((path, msg));
                break;
            }
            // Caused by an earlier removal: drop the enclosing value too, and go on.
            if path.is_empty() || !remove_path(&mut value, &path) {
                break;
            }
            removed.push(path);
            continue;
        }
        errors.push((path, msg));
        if !remove_path(&mut value, &target) {
            break;
        }
        removed.push(target);
    }
    errors
}

/// Removes the value at `path` (object keys and array indices); false when there is none.
fn remove_path(value: &mut serde_json::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match node {
            serde_json::Value::Object(m) => match m.get_mut(seg) {
                Some(v) => v,
                None => return false,
            },
            serde_json::Value::Array(a) => {
                match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    Some(v) => v,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match node {
        serde_json::Value::Object(m) => m.shift_remove(last).is_some(),
        serde_json::Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn check<T: DeserializeOwned>(node: &Node) -> Result<T, PathError> {
    check_value(node.to_json())
}

/// Turns a serde error inside component `prefix` into a diagnostic with a position.
fn component_diag(tree: &Tree, prefix: &str, inner: Vec<String>, msg: String) -> Diagnostic {
    let mut path: Vec<String> = if prefix.is_empty() {
        vec![]
    } else {
        prefix.split('.').map(str::to_string).collect()
    };
    path.extend(inner);
    let mut message = msg;
    let mut key_pos = false;
    // serde: "unknown field `x`, expected one of `a`, `b`" → point at the key, suggest.
    if let Some(field) = between(&message, "unknown field `", "`") {
        let expected = expected_list(&message);
        let field = field.to_string();
        if path.last() != Some(&field) {
            path.push(field.clone());
        }
        key_pos = true;
        message = format!(
            "unknown field `{field}`{}",
            suggest(&field, expected.iter().map(String::as_str))
        );
    } else if let Some(variant) = between(&message, "unknown variant `", "`") {
        let variant = variant.to_string();
        let expected = expected_list(&message);
        message = format!(
            "unknown value `{variant}`{}",
            suggest(&variant, expected.iter().map(String::as_str))
        );
    }
    // Inside an internally tagged enum (`window: {type: tumbling, size: 1mn}`) serde names only
    // the enum: point at the field that holds the offending value.
    if !key_pos
        && let Some(bad) = between(&message, "invalid duration `", "`")
            .or_else(|| between(&message, "invalid size `", "`"))
        && let Some(Node::Map(entries)) = tree.node_at(&path)
        && let Some((_, key, _, _)) = entries
            .iter()
            .find(|(_, _, _, v)| matches!(v, Node::Str(s) if s == bad))
    {
        path.push(key.clone());
    }
    let pos = tree.locate(&path, key_pos);
    Diagnostic::new(path.join("."), message).at(pos.line.max(1), pos.column.max(1))
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text[i..].find(end)? + i;
    Some(&text[i..j])
}

fn expected_list(message: &str) -> Vec<String> {
    let Some(i) = message.find("expected ") else {
        return vec![];
    };
    message[i..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}
