//! The stock `onnx` plugin: runs the ONNX model given as the step's `model:` file over the
//! columns the step lists, in WebAssembly like every plugin (no WASI, a deadline per call, a
//! memory cap). Inference is [tract](https://github.com/sonos/tract) (pure Rust), which
//! implements the ONNX-ML operators scikit-learn models export to (`TreeEnsembleClassifier`,
//! `LinearClassifier`, `LinearRegressor`, `Normalizer`, ...).
//!
//! Config (the step's `inputs:` and `outputs:` arrive in it):
//! - `inputs`: the columns, in order, that form the model's one input tensor `[batch, n]`
//!   (float or double; a column's NULL is NaN).
//! - `outputs`: by output tensor name, either one column name (a tensor `[batch]` or
//!   `[batch, 1]`), or `{column: index}` for the columns of a `[batch, k]` tensor (a
//!   classifier's `probabilities`, by class index). Float tensors become float64 columns,
//!   int64 tensors (a classifier's `label`) int64 columns.
//!
//! The model is checked at `init` (so `tickflow validate` reports it): an operator tract does
//! not implement is named, and so is an input tensor whose type or width does not fit.

mod direct;

use tickflow_plugin::{Batch, Column, ColumnType, Field, Info, Model, export};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_hir::infer::Factoid;

/// An ONNX model, ready to run.
pub struct Onnx {
    plan: Arc<TypedRunnableModel>,
    /// scikit-learn's tree ensembles and linear models, evaluated without tract
    /// ([`direct`]); tract checks them at `init` all the same.
    direct: Option<direct::Direct>,
    /// The input tensor's element type (f32 or f64).
    double: bool,
    /// The columns that form the input tensor, in order.
    columns: Vec<String>,
    outputs: Vec<Output>,
    info: Info,
}

/// One output column: column `index` of output tensor `tensor` (`None`: a `[batch]` tensor).
struct Output {
    tensor: usize,
    index: Option<usize>,
}

const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["inputs", "outputs"],
  "properties": {
    "inputs": { "type": "array", "minItems": 1, "items": { "type": "string" } },
    "outputs": {
      "type": "object",
      "minProperties": 1,
      "additionalProperties": {
        "anyOf": [
          { "type": "string" },
          { "type": "object", "minProperties": 1,
            "additionalProperties": { "type": "integer", "minimum": 0 } }
        ]
      }
    }
  },
  "additionalProperties": false
}"#;

impl Model for Onnx {
    fn info() -> Info {
        // The inputs and outputs come from the config and the model (see `instance_info`).
        Info {
            name: "onnx".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn config_schema() -> Option<String> {
        Some(CONFIG_SCHEMA.into())
    }

    /// Stateless: the keys only route rows.
    fn reads_keys() -> bool {
        false
    }

    fn init(_config: &str) -> Result<Self, String> {
        Err("the onnx plugin runs a model: give the step a `model:` file (an .onnx file)".into())
    }

    fn init_with_artifact(config: &str, artifact: &[u8]) -> Result<Self, String> {
        if artifact.is_empty() {
            return Self::init(config);
        }
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        let columns: Vec<String> = config["inputs"]
            .as_array()
            .ok_or("`inputs` must list the columns the model reads, in order")?
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or("`inputs` lists column names")
            })
            .collect::<Result<_, _>>()?;
        let wanted = config["outputs"]
            .as_object()
            .ok_or("`outputs` must map the model's output tensors to columns")?;
        Onnx::load(artifact, columns, wanted)
    }

    fn instance_info(&self) -> Info {
        self.info.clone()
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Column>, String> {
        let rows = batch.len();
        let k = self.columns.len();
        let mut values = Vec::with_capacity(k);
        for c in &self.columns {
            values.push(batch.f64(c)?);
        }
        let input = if self.double {
            let mut data = Vec::with_capacity(rows * k);
            for r in 0..rows {
                data.extend(values.iter().map(|col| col[r]));
            }
            Tensor::from_shape(&[rows, k], &data)
        } else {
            let mut data = Vec::with_capacity(rows * k);
            for r in 0..rows {
                data.extend(values.iter().map(|col| col[r] as f32));
            }
            if let Some(d) = &self.direct {
                let out = d.run(&data, rows);
                return self
                    .outputs
                    .iter()
                    .map(|o| direct_column(&out[o.tensor], o, rows))
                    .collect();
            }
            Tensor::from_shape(&[rows, k], &data)
        }
        .map_err(|e| format!("{e:#}"))?;
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| format!("running the model: {e:#}"))?;
        self.outputs
            .iter()
            .map(|o| column(&out[o.tensor], o, rows))
            .collect()
    }
}

impl Onnx {
    fn load(
        artifact: &[u8],
        columns: Vec<String>,
        wanted: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Onnx, String> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &artifact[..])
            .map_err(|e| format!("the model does not load as ONNX: {e:#}"))?;
        let model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| format!("the model does not load as ONNX: {e:#}"))?;
        let missing: Vec<String> = model
            .nodes()
            .iter()
            .filter_map(|n| {
                let name = n.op.name();
                name.strip_prefix("Unimplemented(")
                    .and_then(|r| r.strip_suffix(')'))
                    .map(str::to_string)
            })
            .collect();
        if !missing.is_empty() {
            let mut missing = missing;
            missing.sort();
            missing.dedup();
            let hint = if missing.iter().any(|m| m == "ZipMap") {
                " (scikit-learn classifiers: export with skl2onnx's `options={'zipmap': False}`)"
            } else {
                ""
            };
            return Err(format!(
                "the model uses {} {}, which the onnx plugin's runtime (tract {}) does not implement{hint}",
                if missing.len() == 1 {
                    "operator"
                } else {
                    "operators"
                },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                TRACT_VERSION,
            ));
        }
        let inputs = model
            .input_outlets()
            .map_err(|e| format!("{e:#}"))?
            .to_vec();
        if inputs.len() != 1 {
            return Err(format!(
                "the model has {} input tensors; the onnx plugin feeds one ([batch, n] from the `inputs` columns)",
                inputs.len()
            ));
        }
        let input_name = model.node(inputs[0].node).name.clone();
        let fact = model.input_fact(0).map_err(|e| format!("{e:#}"))?;
        let double = match fact.datum_type.concretize() {
            Some(DatumType::F64) => true,
            Some(DatumType::F32) | None => false,
            Some(other) => {
                return Err(format!(
                    "the model's input `{input_name}` is a tensor of {other:?}; the onnx plugin feeds float or double"
                ));
            }
        };
        // The batch dimension is usually free (`None` in skl2onnx): look at each on its own.
        let dims: Vec<Option<TDim>> = fact.shape.dims().map(|d| d.concretize()).collect();
        if !fact.shape.is_open() && dims.len() != 2 {
            return Err(format!(
                "the model's input `{input_name}` has {} dimensions; the onnx plugin feeds [batch, n]",
                dims.len()
            ));
        }
        if let Some(Some(n)) = dims.get(1)
            && let Ok(n) = n.to_usize()
            && n != columns.len()
        {
            return Err(format!(
                "the model's input `{input_name}` has {n} features, but `inputs` lists {} columns",
                columns.len()
            ));
        }
        let k = columns.len();
        let batch = model.symbols.sym("batch");
        let dt = if double {
            DatumType::F64
        } else {
            DatumType::F32
        };
        let model = model
            .with_input_fact(
                0,
                InferenceFact::dt_shape(dt, tvec![batch.to_dim(), k.to_dim()]),
            )
            .and_then(|m| m.into_optimized())
            .map_err(|e| format!("the model does not fit a [batch, {k}] input: {e:#}"))?;
        let names: Vec<String> = model
            .output_outlets()
            .map_err(|e| format!("{e:#}"))?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let mut outputs = Vec::new();
        let mut fields = Vec::new();
        for (tensor_name, how) in wanted {
            let Some(tensor) = names.iter().position(|n| n == tensor_name) else {
                return Err(format!(
                    "`outputs`: the model has no output `{tensor_name}` (its outputs: {})",
                    names.join(", ")
                ));
            };
            let fact = model.output_fact(tensor).map_err(|e| format!("{e:#}"))?;
            let int = match fact.datum_type {
                DatumType::F32 | DatumType::F64 => false,
                DatumType::I64 => true,
                other => {
                    return Err(format!(
                        "`outputs`: output `{tensor_name}` is a tensor of {other:?}; the onnx plugin reads float, double or int64"
                    ));
                }
            };
            let width = match fact.shape.rank() {
                1 => Some(1),
                2 => fact.shape[1].to_usize().ok(),
                r => {
                    return Err(format!(
                        "`outputs`: output `{tensor_name}` has {r} dimensions; the onnx plugin reads [batch] or [batch, k]"
                    ));
                }
            };
            let ty = if int {
                ColumnType::Int64
            } else {
                ColumnType::Float64
            };
            let rank1 = fact.shape.rank() == 1;
            match how {
                serde_json::Value::String(column) => {
                    if width.is_some_and(|w| w != 1) {
                        return Err(format!(
                            "`outputs`: output `{tensor_name}` has {} values per row: name a column for each, `{{{tensor_name}: {{COLUMN: INDEX, ...}}}}`",
                            width.unwrap_or(0)
                        ));
                    }
                    outputs.push(Output {
                        tensor,
                        index: (!rank1).then_some(0),
                    });
                    fields.push(Field::new(column, ty));
                }
                serde_json::Value::Object(by_index) => {
                    for (column, index) in by_index {
                        let index = index.as_u64().ok_or_else(|| {
                            format!("`outputs.{tensor_name}.{column}` must be a column index")
                        })? as usize;
                        if let Some(w) = width
                            && index >= w
                        {
                            return Err(format!(
                                "`outputs.{tensor_name}.{column}`: index {index}, but the output has {w} values per row (0 to {})",
                                w - 1
                            ));
                        }
                        outputs.push(Output {
                            tensor,
                            index: (!rank1).then_some(index),
                        });
                        fields.push(Field::new(column, ty));
                    }
                }
                _ => {
                    return Err(format!(
                        "`outputs.{tensor_name}` must be a column name or {{COLUMN: INDEX}}"
                    ));
                }
            }
        }
        let plan = model
            .into_runnable()
            .map_err(|e| format!("preparing the model: {e:#}"))?;
        let direct = if double {
            None
        } else {
            direct::Direct::new(&proto, &names, k)
        };
        let mut inputs = vec![Field::new("key", ColumnType::Text)];
        inputs.extend(columns.iter().map(|c| Field::new(c, ColumnType::Float64)));
        Ok(Onnx {
            plan,
            direct,
            double,
            columns,
            outputs,
            info: Info {
                name: "onnx".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                inputs,
                outputs: fields,
            },
        })
    }
}

/// tract's version, for messages.
const TRACT_VERSION: &str = "0.23";

/// Output `o` of a run, as a column of `rows` values.
fn column(t: &TValue, o: &Output, rows: usize) -> Result<Column, String> {
    macro_rules! read {
        ($ty:ty, $wrap:expr) => {{
            let view = t
                .to_plain_array_view::<$ty>()
                .map_err(|e| format!("{e:#}"))?;
            if view.shape().first() != Some(&rows) {
                return Err(format!(
                    "the model returned {:?} for {rows} rows",
                    view.shape()
                ));
            }
            (0..rows)
                .map(|r| match o.index {
                    Some(i) => view[[r, i]],
                    None => view[[r]],
                })
                .map($wrap)
                .collect::<Vec<_>>()
        }};
    }
    Ok(match t.datum_type() {
        DatumType::F32 => Column::Float64(read!(f32, |x: f32| x as f64)),
        DatumType::F64 => Column::Float64(read!(f64, |x: f64| x)),
        DatumType::I64 => Column::Int64(read!(i64, |x: i64| x)),
        other => return Err(format!("the model returned a tensor of {other:?}")),
    })
}

/// Output `o` of a direct run, as a column of `rows` values.
fn direct_column(t: &direct::Out, o: &Output, rows: usize) -> Result<Column, String> {
    Ok(match t {
        direct::Out::F32 { data, width } => {
            let i = o.index.unwrap_or(0);
            if i >= *width {
                return Err(format!("column {i} of an output of {width} values per row"));
            }
            Column::Float64((0..rows).map(|r| data[r * width + i] as f64).collect())
        }
        direct::Out::I64(v) => Column::Int64(v.clone()),
    })
}

export!(Onnx);

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample logistic model scored directly and by tract: the same labels, and
    /// probabilities within float rounding, NaN rows included. (Both are checked against
    /// onnxruntime, within 1e-6 relative, by the integration tests' oracle.)
    #[test]
    fn the_direct_path_scores_as_tract_does() {
        // The manifest folder as cargo gives it at run time: a test binary reused from a build
        // cache shared with another checkout holds that checkout's path.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let artifact =
            std::fs::read(format!("{dir}/../../../specs/sample/updown-logit.onnx")).unwrap();
        let config = r#"{"inputs": ["a", "b", "c", "d"], "outputs": {"probabilities": {"p0": 0, "p1": 1, "p2": 2}, "label": "l"}}"#;
        let mut fast = Onnx::init_with_artifact(config, &artifact).unwrap();
        assert!(
            fast.direct.is_some(),
            "a LinearClassifier + Normalizer runs directly"
        );
        let mut slow = Onnx::init_with_artifact(config, &artifact).unwrap();
        slow.direct = None;
        let mut state = 5u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        };
        let rows = 2000;
        let mut columns = vec![Column::Text((0..rows).map(|i| format!("k{i}")).collect())];
        for c in 0..4 {
            columns.push(Column::Float64(
                (0..rows)
                    .map(|r| {
                        if (r + c) % 97 == 0 {
                            f64::NAN
                        } else {
                            next() * (1 + c * 3) as f64
                        }
                    })
                    .collect(),
            ));
        }
        let batch = Batch {
            names: ["key", "a", "b", "c", "d"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            columns,
        };
        let (a, b) = (fast.process(&batch).unwrap(), slow.process(&batch).unwrap());
        let mut nans = 0;
        for (x, y) in a.iter().zip(&b) {
            match (x, y) {
                (Column::Float64(x), Column::Float64(y)) => {
                    for (x, y) in x.iter().zip(y) {
                        if y.is_nan() {
                            assert!(x.is_nan());
                            nans += 1;
                        } else {
                            // Float rounding of scores up to about ±30 (tract sums in
                            // another order): about 1e-6 relative after softmax.
                            assert!((x - y).abs() <= 1e-5 * y.abs() + 1e-9, "{x} vs {y}");
                        }
                    }
                }
                (Column::Int64(x), Column::Int64(y)) => {
                    let nan_rows: Vec<usize> = (0..rows)
                        .filter(|r| (0..4).any(|c| (r + c) % 97 == 0))
                        .collect();
                    for r in 0..rows {
                        if !nan_rows.contains(&r) {
                            assert_eq!(x[r], y[r], "row {r}");
                        }
                    }
                }
                _ => panic!("column types differ"),
            }
        }
        assert!(nans > 0);
    }
}
