//! The planned dataflow as a picture: Graphviz DOT or Mermaid. Only names, types and shapes are
//! shown — never paths' credentials or tokens.

use super::{NodeRef, Plan, WindowKind};
use crate::sources::SourceSpec;

fn window_label(kind: WindowKind) -> String {
    let d = |ms: i64| crate::spec::units::Duration(ms).to_string();
    match kind {
        WindowKind::Tumbling { size } => format!("tumbling {}", d(size)),
        WindowKind::Hopping { size, slide } => format!("hopping {} every {}", d(size), d(slide)),
        WindowKind::Session { gap } => format!("session gap {}", d(gap)),
    }
}

fn node_id(plan: &Plan, n: NodeRef) -> String {
    match n {
        NodeRef::Source(i) => format!("source_{}", sanitize(&plan.sources[i].name)),
        NodeRef::Window(i) => format!("step_{}", sanitize(&plan.windows[i].name)),
        NodeRef::Model(i) => format!("step_{}", sanitize(&plan.models[i].name)),
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

struct Node {
    id: String,
    label: String,
    shape: &'static str,
}

fn nodes_and_edges(plan: &Plan) -> (Vec<Node>, Vec<(String, String, String)>) {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (i, s) in plan.sources.iter().enumerate() {
        let detail = match &s.config {
            SourceSpec::Replay(c) => format!("replay, out-of-orderness {}", c.max_out_of_orderness),
            SourceSpec::Kafka(c) => format!(
                "kafka {} / {}, out-of-orderness {}",
                c.brokers, c.topic, c.max_out_of_orderness
            ),
            SourceSpec::Finnhub(c) => format!(
                "finnhub {}, {} symbols, out-of-orderness {}",
                crate::sources::finnhub::client::redacted(&c.url),
                c.symbols.len(),
                c.max_out_of_orderness
            ),
        };
        nodes.push(Node {
            id: node_id(plan, NodeRef::Source(i)),
            label: format!("{}\\n{}", s.name, detail),
            shape: "box",
        });
    }
    for (i, w) in plan.windows.iter().enumerate() {
        let aggs: Vec<&str> = w.aggregates.iter().map(|a| a.name.as_str()).collect();
        nodes.push(Node {
            id: node_id(plan, NodeRef::Window(i)),
            label: format!(
                "{}\\nwindow {} by {}\\n{}",
                w.name,
                window_label(w.kind),
                w.schema.fields[0].name,
                aggs.join(", ")
            ),
            shape: "ellipse",
        });
        edges.push((
            node_id(plan, NodeRef::Source(w.input)),
            node_id(plan, NodeRef::Window(i)),
            "trades by key".to_string(),
        ));
    }
    for (i, m) in plan.models.iter().enumerate() {
        let outputs: Vec<&str> = m
            .plugin
            .info
            .outputs
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let file = m
            .plugin
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        // What a plugin says about itself is untrusted: one line, no quotes, bounded.
        let clean = |s: &str| -> String {
            crate::text::quote(s, crate::text::QUOTE_CHARS)
                .chars()
                .map(|c| match c {
                    '"' => '\'',
                    '\\' => '/',
                    c => c,
                })
                .collect()
        };
        let outputs: Vec<String> = outputs.iter().map(|o| clean(o)).collect();
        nodes.push(Node {
            id: node_id(plan, NodeRef::Model(i)),
            label: format!(
                "{}\\nmodel {} {} ({})\\n+ {}",
                m.name,
                clean(&m.plugin.info.name),
                clean(&m.plugin.info.version),
                clean(&file),
                outputs.join(", ")
            ),
            shape: "hexagon",
        });
        edges.push((
            node_id(plan, m.input),
            node_id(plan, NodeRef::Model(i)),
            "rows by key".to_string(),
        ));
    }
    for s in &plan.sinks {
        let id = format!("sink_{}", sanitize(&s.name));
        let label = match &s.config {
            crate::sinks::SinkSpec::Parquet(c) => format!(
                "{}\\nparquet, partitions {}",
                s.name,
                c.partition_by.join("/")
            ),
            crate::sinks::SinkSpec::Kafka(c) => {
                format!("{}\\nkafka {} / {}", s.name, c.brokers, c.topic)
            }
        };
        nodes.push(Node {
            id: id.clone(),
            label,
            shape: "cylinder",
        });
        edges.push((node_id(plan, s.input), id, String::new()));
    }
    if plan.dead_letters.is_some() {
        nodes.push(Node {
            id: "dead_letters".into(),
            label: "dead letters".into(),
            shape: "note",
        });
        for i in 0..plan.sources.len() {
            edges.push((
                node_id(plan, NodeRef::Source(i)),
                "dead_letters".into(),
                "rejected".into(),
            ));
        }
        for i in 0..plan.windows.len() {
            edges.push((
                node_id(plan, NodeRef::Window(i)),
                "dead_letters".into(),
                "late".into(),
            ));
        }
    }
    (nodes, edges)
}

/// Graphviz DOT.
pub fn to_dot(plan: &Plan) -> String {
    let (nodes, edges) = nodes_and_edges(plan);
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n",
        plan.name.replace('"', "'")
    );
    for n in nodes {
        out.push_str(&format!(
            "  {} [shape={}, label=\"{}\"];\n",
            n.id,
            n.shape,
            n.label.replace('"', "'")
        ));
    }
    for (a, b, label) in edges {
        if label.is_empty() {
            out.push_str(&format!("  {a} -> {b};\n"));
        } else {
            out.push_str(&format!("  {a} -> {b} [label=\"{label}\"];\n"));
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn to_mermaid(plan: &Plan) -> String {
    let (nodes, edges) = nodes_and_edges(plan);
    let mut out = String::from("flowchart LR\n");
    for n in nodes {
        let label = n.label.replace("\\n", "<br/>").replace('"', "'");
        let (open, close) = match n.shape {
            "box" => ("[\"", "\"]"),
            "ellipse" => ("(\"", "\")"),
            "cylinder" => ("[(\"", "\")]"),
            "hexagon" => ("{{\"", "\"}}"),
            _ => ("[/\"", "\"/]"),
        };
        out.push_str(&format!("  {}{open}{label}{close}\n", n.id));
    }
    for (a, b, label) in edges {
        if label.is_empty() {
            out.push_str(&format!("  {a} --> {b}\n"));
        } else {
            out.push_str(&format!("  {a} -->|{label}| {b}\n"));
        }
    }
    out
}
