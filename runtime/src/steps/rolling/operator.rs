//! The rolling step reads each key's rows in event-time order ([`crate::steps::ordered`]):
//! every row comes out with its features appended.

use super::Rolling;
use super::state::KeyState;
use crate::base::record::{Row, Value};
use crate::steps::ordered::InOrder;

impl InOrder for Rolling {
    type State = KeyState;
    fn apply(&self, _key: &str, st: &mut KeyState, ts: i64, mut row: Row, out: &mut Vec<Row>) {
        let values = self
            .slots
            .iter()
            .map(|&c| match row[c] {
                Value::F64(x) => Some(x),
                Value::I64(x) => Some(x as f64),
                _ => None,
            })
            .collect();
        let skip = self.skip_warmup && self.features.warming(st);
        let features = self.features.apply(st, ts, values);
        if !skip {
            row.extend(features);
            out.push(row);
        }
    }
}
