//! The planned dataflow as a picture: Graphviz DOT or Mermaid. Only names, types and shapes are
//! shown — never paths' credentials or tokens.

use super::{NodeRef, Plan};

fn node_id(plan: &Plan, n: NodeRef) -> String {
    match n {
        NodeRef::Source(i) => format!("source_{}", sanitize(&plan.sources[i].name)),
        NodeRef::Step(i) => format!("step_{}", sanitize(&plan.steps[i].name)),
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
        let detail = s.config.kind().describe();
        nodes.push(Node {
            id: node_id(plan, NodeRef::Source(i)),
            label: format!("{}\\n{}", s.name, detail),
            shape: "box",
        });
    }
    for (i, st) in plan.steps.iter().enumerate() {
        // What a step says of itself is built from the spec and the plugin: quotes are made
        // harmless for DOT/Mermaid by the renderers.
        nodes.push(Node {
            id: node_id(plan, NodeRef::Step(i)),
            label: format!("{}\\n{}", st.name, st.op.describe()),
            shape: st.op.graph_shape(),
        });
        let input = plan.stream_of(st.input);
        let records = match input.kind {
            crate::steps::StreamKind::Trades => "trades",
            crate::steps::StreamKind::Rows => "rows",
        };
        let what = if st.op.reads_by_key(input) {
            format!("{records} by key")
        } else {
            records.to_string()
        };
        edges.push((
            node_id(plan, st.input),
            node_id(plan, NodeRef::Step(i)),
            what,
        ));
        for side in &st.sides {
            edges.push((
                node_id(plan, *side),
                node_id(plan, NodeRef::Step(i)),
                "joined".to_string(),
            ));
        }
    }
    for s in &plan.sinks {
        let id = format!("sink_{}", sanitize(&s.name));
        let label = format!("{}\\n{}", s.name, s.op.describe());
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
        for (i, st) in plan.steps.iter().enumerate() {
            if let Some(label) = st.op.dead_letter_label() {
                edges.push((
                    node_id(plan, NodeRef::Step(i)),
                    "dead_letters".into(),
                    label.into(),
                ));
            }
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
