//! scikit-learn's models as skl2onnx exports them, evaluated directly from the ONNX-ML
//! operator's attributes instead of by tract: a `TreeEnsembleClassifier` or a
//! `LinearClassifier` on the graph's input, followed by `Identity` and `Normalizer` nodes only.
//! tract reaches each tree's leaves by a walk linear in the ensemble's leaf count and runs the linear models through its generic graph machinery; here a tree is a
//! few compares per row and a linear model a dot product, in the float arithmetic and order
//! onnxruntime uses (its results are the tests' oracle). Any other graph, or an attribute this
//! evaluator does not hold against onnxruntime in a test (two classes, whose layout onnxruntime
//! treats apart; `LOGISTIC`, `PROBIT` and `SOFTMAX_ZERO`; regressors), is left to tract.

use std::collections::HashMap;

use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto};

/// One graph output of a run, `rows` long.
pub enum Out {
    /// `[rows, width]`, row-major.
    F32 {
        data: Vec<f32>,
        width: usize,
    },
    I64(Vec<i64>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Post {
    None,
    Softmax,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Norm {
    L1,
    L2,
    Max,
}

/// What a graph output is: the operator's label, or its scores after some normalizers.
#[derive(Clone, Debug)]
enum Source {
    Label,
    Scores(Vec<Norm>),
}

enum Op {
    Linear {
        /// `[targets, k]`, row-major.
        coefficients: Vec<f32>,
        intercepts: Vec<f32>,
    },
    Trees(Trees),
}

/// A tree ensemble, flattened: every tree's nodes in one array, children by index.
struct Trees {
    roots: Vec<u32>,
    nodes: Vec<Node>,
    /// Per leaf node: its range in `weights`.
    weights: Vec<(u32, f32)>,
    base: Vec<f32>,
}

#[derive(Clone, Copy)]
struct Node {
    feature: u32,
    value: f32,
    mode: Mode,
    nan_true: bool,
    yes: u32,
    no: u32,
    /// A leaf's weights: `weights[from..to]`.
    from: u32,
    to: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

/// A model evaluated directly.
pub struct Direct {
    op: Op,
    post: Post,
    /// Class labels.
    labels: Vec<i64>,
    /// Scores per row: one per class.
    width: usize,
    /// Input features the operator reads.
    features: usize,
    outputs: Vec<Source>,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
fn ints(node: &NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map(|a| a.ints.clone()).unwrap_or_default()
}
fn floats(node: &NodeProto, name: &str) -> Vec<f32> {
    attr(node, name)
        .map(|a| a.floats.clone())
        .unwrap_or_default()
}
fn string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}
fn strings(node: &NodeProto, name: &str) -> Vec<String> {
    attr(node, name)
        .map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Direct {
    /// The model `proto` evaluated directly, with its outputs in the order of `names` (the graph
    /// outputs tract lists), for a `[batch, k]` float input; `None`: tract runs it.
    pub fn new(proto: &ModelProto, names: &[String], k: usize) -> Option<Direct> {
        let graph = proto.graph.as_ref()?;
        let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !initializers.contains(n))
            .collect();
        let [input] = inputs[..] else { return None };
        let (first, rest) = graph.node.split_first()?;
        if first.domain != "ai.onnx.ml" || first.input.len() != 1 || first.input[0] != input {
            return None;
        }
        // Regressors, two classes and `LOGISTIC` are left to tract until a test holds them
        // against onnxruntime.
        let mut direct = match first.op_type.as_str() {
            "LinearClassifier" => linear(first, k)?,
            "TreeEnsembleClassifier" => trees(first, k)?,
            _ => return None,
        };
        // What each tensor is: the operator's outputs, then what the nodes after it make.
        let mut tensors: HashMap<String, Source> = HashMap::new();
        tensors.insert(first.output.first()?.clone(), Source::Label);
        if let Some(scores) = first.output.get(1) {
            tensors.insert(scores.clone(), Source::Scores(Vec::new()));
        }
        for node in rest {
            let [from] = &node.input[..] else { return None };
            let [to] = &node.output[..] else { return None };
            let source = tensors.get(from)?.clone();
            let made = match (node.op_type.as_str(), source) {
                ("Identity", s) => s,
                ("Normalizer", Source::Scores(mut norms)) if node.domain == "ai.onnx.ml" => {
                    norms.push(match string(node, "norm")?.as_str() {
                        "L1" => Norm::L1,
                        "L2" => Norm::L2,
                        "MAX" => Norm::Max,
                        _ => return None,
                    });
                    Source::Scores(norms)
                }
                _ => return None,
            };
            tensors.insert(to.clone(), made);
        }
        direct.outputs = names
            .iter()
            .map(|n| tensors.get(n).cloned())
            .collect::<Option<_>>()?;
        Some(direct)
    }

    /// Scores `rows` rows of `input` (`[rows, k]`, row-major): the outputs in `names`' order.
    pub fn run(&self, input: &[f32], rows: usize) -> Vec<Out> {
        let w = self.width;
        let mut scores = vec![0f32; rows * w];
        match &self.op {
            Op::Linear {
                coefficients,
                intercepts,
            } => {
                let k = self.features;
                for (x, s) in input.chunks_exact(k).zip(scores.chunks_exact_mut(w)) {
                    for (t, s) in s.iter_mut().enumerate() {
                        let c = &coefficients[t * k..(t + 1) * k];
                        let dot = x.iter().zip(c).fold(0f32, |acc, (a, b)| acc + a * b);
                        *s = dot + intercepts[t];
                    }
                }
            }
            Op::Trees(t) => {
                let k = self.features;
                for (x, s) in input.chunks_exact(k).zip(scores.chunks_exact_mut(w)) {
                    for &root in &t.roots {
                        let leaf = t.leaf(root, x);
                        for &(class, weight) in &t.weights[leaf.from as usize..leaf.to as usize] {
                            s[class as usize] += weight;
                        }
                    }
                    for (s, b) in s.iter_mut().zip(&t.base) {
                        *s += b;
                    }
                }
            }
        }
        let labels: Vec<i64> = scores
            .chunks_exact(w)
            .map(|s| {
                // The first highest score (a NaN never replaces it), as onnxruntime picks.
                let mut best = 0;
                for c in 1..w {
                    if s[best] < s[c] {
                        best = c;
                    }
                }
                self.labels[best]
            })
            .collect();
        match self.post {
            Post::None => {}
            Post::Softmax => scores.chunks_exact_mut(w).for_each(softmax),
        }
        // Usually one output of each: the last use of each takes it instead of a copy.
        let last_scores = self
            .outputs
            .iter()
            .rposition(|o| matches!(o, Source::Scores(_)));
        let last_label = self
            .outputs
            .iter()
            .rposition(|o| matches!(o, Source::Label));
        let (mut scores, mut labels) = (Some(scores), Some(labels));
        self.outputs
            .iter()
            .enumerate()
            .map(|(i, o)| match o {
                Source::Label => Out::I64(take_or_copy(&mut labels, i == last_label.unwrap_or(0))),
                Source::Scores(norms) => {
                    let mut data = take_or_copy(&mut scores, Some(i) == last_scores);
                    for n in norms {
                        data.chunks_exact_mut(w).for_each(|row| normalize(row, *n));
                    }
                    Out::F32 { data, width: w }
                }
            })
            .collect()
    }
}

/// The value itself at its last use, a copy before.
fn take_or_copy<T: Clone>(v: &mut Option<Vec<T>>, last: bool) -> Vec<T> {
    if last {
        v.take().unwrap_or_default()
    } else {
        v.clone().unwrap_or_default()
    }
}

impl Trees {
    #[inline]
    fn leaf(&self, root: u32, x: &[f32]) -> &Node {
        let mut n = &self.nodes[root as usize];
        loop {
            let v = x[n.feature as usize];
            let yes = match n.mode {
                Mode::Leaf => return n,
                Mode::Leq => v <= n.value,
                Mode::Lt => v < n.value,
                Mode::Gte => v >= n.value,
                Mode::Gt => v > n.value,
                Mode::Eq => v == n.value,
                Mode::Neq => v != n.value,
            } || (n.nan_true && v.is_nan());
            n = &self.nodes[if yes { n.yes } else { n.no } as usize];
        }
    }
}

/// onnxruntime's softmax, in float: shifted by the highest value.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

fn normalize(row: &mut [f32], norm: Norm) {
    let by = match norm {
        Norm::L1 => row.iter().map(|v| v.abs()).sum::<f32>(),
        Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
        Norm::Max => row.iter().copied().fold(f32::MIN, f32::max),
    };
    if by != 0.0 {
        row.iter_mut().for_each(|v| *v /= by);
    }
}

/// The post transforms the tests hold against onnxruntime (tract runs the others).
fn post_transform(node: &NodeProto) -> Option<Post> {
    match string(node, "post_transform").as_deref().unwrap_or("NONE") {
        "NONE" => Some(Post::None),
        "SOFTMAX" => Some(Post::Softmax),
        _ => None,
    }
}

/// Integer class labels (string labels are left to tract).
fn class_labels(node: &NodeProto, attr_name: &str) -> Option<Vec<i64>> {
    if !strings(node, "classlabels_strings").is_empty() {
        return None;
    }
    let labels = ints(node, attr_name);
    (!labels.is_empty()).then_some(labels)
}

fn linear(node: &NodeProto, k: usize) -> Option<Direct> {
    let coefficients = floats(node, "coefficients");
    let labels = class_labels(node, "classlabels_ints")?;
    // onnxruntime treats two classes apart (one row of coefficients, or two): left to tract.
    if labels.len() < 3 {
        return None;
    }
    // One row of coefficients per class.
    let targets = labels.len();
    if coefficients.len() != targets * k {
        return None;
    }
    let mut intercepts = floats(node, "intercepts");
    if intercepts.is_empty() {
        intercepts = vec![0.0; targets];
    }
    if intercepts.len() != targets {
        return None;
    }
    let post = post_transform(node)?;
    Some(Direct {
        op: Op::Linear {
            coefficients,
            intercepts,
        },
        post,
        labels,
        width: targets,
        features: k,
        outputs: Vec::new(),
    })
}

fn trees(node: &NodeProto, k: usize) -> Option<Direct> {
    let labels = class_labels(node, "classlabels_int64s")?;
    let width = labels.len();
    // onnxruntime treats two classes apart (the binary case): left to tract.
    if width < 3 {
        return None;
    }
    // Values as tensors (opset 3's `*_as_tensor`, doubles) are left to tract.
    if node
        .attribute
        .iter()
        .any(|a| a.name.ends_with("_as_tensor"))
    {
        return None;
    }
    let tree_ids = ints(node, "nodes_treeids");
    let node_ids = ints(node, "nodes_nodeids");
    let feature_ids = ints(node, "nodes_featureids");
    let values = floats(node, "nodes_values");
    let modes = strings(node, "nodes_modes");
    let yes = ints(node, "nodes_truenodeids");
    let no = ints(node, "nodes_falsenodeids");
    let mut nan_true = ints(node, "nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    if n == 0
        || [
            node_ids.len(),
            feature_ids.len(),
            values.len(),
            modes.len(),
            yes.len(),
            no.len(),
        ]
        .iter()
        .any(|l| *l != n)
    {
        return None;
    }
    if nan_true.is_empty() {
        nan_true = vec![0; n];
    }
    if nan_true.len() != n {
        return None;
    }
    let leaf_trees = ints(node, "class_treeids");
    let leaf_nodes = ints(node, "class_nodeids");
    let leaf_ids = ints(node, "class_ids");
    let leaf_weights = floats(node, "class_weights");
    let l = leaf_trees.len();
    if l == 0
        || [leaf_nodes.len(), leaf_ids.len(), leaf_weights.len()]
            .iter()
            .any(|x| *x != l)
    {
        return None;
    }
    // Every class must get weights: onnxruntime lays out a classifier whose leaves name one
    // class of two differently (the binary case); tract reads that one.
    if leaf_ids.iter().any(|c| *c < 0 || *c as usize >= width)
        || (0..width as i64).any(|c| !leaf_ids.contains(&c))
    {
        return None;
    }
    let mut base = floats(node, "base_values");
    if base.is_empty() {
        // onnxruntime picks a class's label only among classes a leaf gave a weight in that row
        // (or a base value): with every leaf weighing every class that is all of them.
        let mut per_leaf: HashMap<(i64, i64), usize> = HashMap::new();
        for i in 0..l {
            *per_leaf.entry((leaf_trees[i], leaf_nodes[i])).or_default() += 1;
        }
        if per_leaf.values().any(|c| *c != width) {
            return None;
        }
        base = vec![0.0; width];
    }
    if base.len() != width {
        return None;
    }
    // (tree, node id) → index in `nodes`, in the attributes' order.
    let index: HashMap<(i64, i64), u32> = tree_ids
        .iter()
        .zip(&node_ids)
        .enumerate()
        .map(|(i, (t, id))| ((*t, *id), i as u32))
        .collect();
    if index.len() != n {
        return None;
    }
    // Each leaf's weights, contiguous, in the attributes' order.
    let mut by_leaf: HashMap<u32, Vec<(u32, f32)>> = HashMap::new();
    for i in 0..l {
        let leaf = *index.get(&(leaf_trees[i], leaf_nodes[i]))?;
        by_leaf
            .entry(leaf)
            .or_default()
            .push((leaf_ids[i] as u32, leaf_weights[i]));
    }
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(l);
    let mut referenced = vec![false; n];
    for i in 0..n {
        let mode = match modes[i].as_str() {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => Mode::Leaf,
            _ => return None,
        };
        let from = weights.len() as u32;
        let (mut y, mut f) = (0, 0);
        if mode == Mode::Leaf {
            weights.extend(by_leaf.remove(&(i as u32)).unwrap_or_default());
        } else {
            if feature_ids[i] < 0 || feature_ids[i] as usize >= k {
                return None;
            }
            y = *index.get(&(tree_ids[i], yes[i]))?;
            f = *index.get(&(tree_ids[i], no[i]))?;
            // Every node has at most one parent: from a root every walk ends at a leaf (a
            // cycle, or a node reached twice, would need a second parent).
            if y == f || referenced[y as usize] || referenced[f as usize] {
                return None;
            }
            referenced[y as usize] = true;
            referenced[f as usize] = true;
        }
        nodes.push(Node {
            // A leaf's feature is never read, but it is indexed: 0 is always in range.
            feature: if mode == Mode::Leaf {
                0
            } else {
                feature_ids[i] as u32
            },
            value: values[i],
            mode,
            nan_true: nan_true[i] != 0,
            yes: y,
            no: f,
            from,
            to: weights.len() as u32,
        });
    }
    // Weights on a node that is not a leaf: not a model this evaluator reads.
    if !by_leaf.is_empty() {
        return None;
    }
    // A tree's root is its node no other node points to; trees in order of their ids.
    let mut roots: Vec<(i64, u32)> = (0..n)
        .filter(|i| !referenced[*i])
        .map(|i| (tree_ids[i], i as u32))
        .collect();
    roots.sort();
    let trees: std::collections::BTreeSet<i64> = tree_ids.iter().copied().collect();
    if roots.len() != trees.len() {
        return None;
    }
    let post = post_transform(node)?;
    Some(Direct {
        op: Op::Trees(Trees {
            roots: roots.into_iter().map(|(_, r)| r).collect(),
            nodes,
            weights,
            base,
        }),
        post,
        labels,
        width,
        features: k,
        outputs: Vec::new(),
    })
}
