//! The spec as a YAML tree that remembers where every key and value stands, so that errors found
//! after parsing (an unknown input, a bad duration) still point at `LINE:COL`. The typed config is
//! deserialized from this tree (via JSON values); the tree itself never leaves the spec module.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<(Pos, Node)>),
    /// Entries as (key position, key, value position, value), in document order.
    Map(Vec<(Pos, String, Pos, Node)>),
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        line: loc.line() as usize,
        column: loc.column() as usize,
    }
}

/// A node with the position of its value.
struct SpannedNode(Pos, Node);

impl<'de> Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Node>::deserialize(d)?;
        Ok(SpannedNode(pos_of(&s.referenced), s.value))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                i64::try_from(v)
                    .map(Node::Int)
                    .or(Ok(Node::Float(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(SpannedNode(p, n)) = seq.next_element()? {
                    items.push((p, n));
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries: Vec<(Pos, String, Pos, Node)> = Vec::new();
                // NB: a set, not a scan of `entries`: a mapping with 400k keys must stay linear.
                let mut seen: std::collections::HashSet<String, foldhash::fast::RandomState> =
                    Default::default();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let SpannedNode(vp, v) = map.next_value()?;
                    let kp = pos_of(&key.referenced);
                    if !seen.insert(key.value.clone()) {
                        return Err(de::Error::custom(format!(
                            "duplicate key `{}` at line {}",
                            crate::base::text::quote(&key.value, crate::base::text::QUOTE_CHARS),
                            kp.line
                        )));
                    }
                    entries.push((kp, key.value, vp, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A parsed document: the root node and the position of the root.
pub struct Tree {
    pub root: Node,
    pub root_pos: Pos,
}

impl Tree {
    /// Parses YAML text. A syntax error comes back with its position.
    pub fn parse(text: &str) -> Result<Tree, (Pos, String)> {
        // YAML 1.2 core booleans only: a step named `n` or `on` stays a string.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        match serde_saphyr::from_str_with_options::<SpannedNode>(text, options) {
            Ok(SpannedNode(p, n)) => Ok(Tree {
                root: n,
                root_pos: p,
            }),
            Err(e) => {
                let pos = e.location().map(|l| pos_of(&l)).unwrap_or_default();
                // serde-saphyr appends a rendered snippet; keep the first line only.
                let msg = e.to_string();
                let first = msg
                    .lines()
                    .next()
                    .unwrap_or("invalid YAML")
                    .trim()
                    .to_string();
                // The position is given apart (FILE:LINE:COL): not again in the message.
                let first = first
                    .strip_prefix("error: ")
                    .map(str::to_string)
                    .unwrap_or(first);
                let first = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
                    Some((at, rest)) if at.contains(" column ") => rest.to_string(),
                    _ => first,
                };
                // A name given twice: in the project's words, without the parser's options.
                if let Some(rest) = first.strip_prefix("duplicate mapping key: ") {
                    let key = rest
                        .split(", set DuplicateKeyPolicy")
                        .next()
                        .unwrap_or(rest);
                    return Err((
                        pos,
                        format!(
                            "`{key}` appears twice in this mapping: each name may be given once"
                        ),
                    ));
                }
                // The parser's limits (nodes, depth, aliases) guard against alias bombs and
                // absurd files: say so in words.
                if first.contains("budget breached") {
                    let what = first.split("budget breached:").nth(1).unwrap_or("").trim();
                    return Err((
                        pos,
                        format!(
                            "the spec is too large for a pipeline spec (YAML limit reached: {what})"
                        ),
                    ));
                }
                Err((pos, first))
            }
        }
    }

    /// The node at `path` (dotted; sequence items by index), if there is one.
    pub fn node_at(&self, path: &[String]) -> Option<&Node> {
        let mut node = &self.root;
        for seg in path {
            node = match node {
                Node::Map(entries) => &entries.iter().find(|(_, k, _, _)| k == seg)?.3,
                Node::Seq(items) => &items.get(seg.parse::<usize>().ok()?)?.1,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The position of the value at `path` (dotted; sequence items by index), or of its nearest
    /// existing ancestor. `key_pos` asks for the position of the key instead of its value.
    pub fn locate(&self, path: &[String], key_pos: bool) -> Pos {
        let mut node = &self.root;
        let mut pos = self.root_pos;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match node {
                Node::Map(entries) => match entries.iter().find(|(_, k, _, _)| k == seg) {
                    Some((kp, _, vp, v)) => {
                        pos = if last && key_pos { *kp } else { *vp };
                        node = v;
                    }
                    None => return pos,
                },
                Node::Seq(items) => match seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some((p, v)) => {
                        pos = *p;
                        node = v;
                    }
                    None => return pos,
                },
                _ => return pos,
            }
        }
        pos
    }
}

impl Node {
    /// The node as a JSON value (key order kept) for typed deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(|(_, n)| n.to_json()).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(_, k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}
