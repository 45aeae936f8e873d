//! Conditions over trades, compiled against the trade's fields: a filter on trades keeps the fast
//! path's speed (no columns built) when its condition only compares fields with literals, tests
//! the symbol's prefix, suffix or content, and combines those with AND, OR and NOT. Anything
//! else (arithmetic, functions that can fail, NULL literals) goes through the column evaluator.
//!
//! A trade's symbol, price, volume and timestamp are never NULL, and none of these nodes can
//! fail, so the logic is two-valued and the result is the column evaluator's, row for row (the
//! unit tests compare both on random conditions and trades).

use std::cmp::Ordering;

use super::check::{CmpOp, Lit, Node, Typed};
use super::func::Func;
use crate::base::record::Trade;

/// A condition compiled against a trade's fields.
#[derive(Debug, Clone)]
pub enum TradeCondition {
    Const(bool),
    Float {
        field: FloatField,
        op: CmpOp,
        value: f64,
    },
    Time {
        op: CmpOp,
        value: i64,
    },
    Symbol {
        op: CmpOp,
        value: String,
    },
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    And(Box<TradeCondition>, Box<TradeCondition>),
    Or(Box<TradeCondition>, Box<TradeCondition>),
    Not(Box<TradeCondition>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatField {
    Price,
    Volume,
}

// The columns of `Schema::trades`.
const SYMBOL: usize = 0;
const PRICE: usize = 1;
const VOLUME: usize = 2;
const TIMESTAMP: usize = 3;

impl TradeCondition {
    /// The condition `e` (over [`crate::base::record::Schema::trades`]) compiled, or `None` when
    /// it needs the column evaluator.
    pub fn compile(e: &Typed) -> Option<TradeCondition> {
        Some(match &e.node {
            Node::Lit(Lit::Bool(b)) => TradeCondition::Const(*b),
            Node::And(a, b) => {
                TradeCondition::And(Box::new(Self::compile(a)?), Box::new(Self::compile(b)?))
            }
            Node::Or(a, b) => {
                TradeCondition::Or(Box::new(Self::compile(a)?), Box::new(Self::compile(b)?))
            }
            Node::Not(a) => TradeCondition::Not(Box::new(Self::compile(a)?)),
            Node::IsNull { e, negated } if column(e).is_some_and(|c| c <= TIMESTAMP) => {
                TradeCondition::Const(*negated)
            }
            Node::Cmp(op, a, b) => match (column(a), column(b)) {
                (Some(c), None) => field_vs_literal(c, *op, b)?,
                (None, Some(c)) => field_vs_literal(c, flip(*op), a)?,
                _ => return None,
            },
            Node::Call(f @ (Func::StartsWith | Func::EndsWith | Func::Contains), args)
                if args.len() == 2 && column(&args[0]) == Some(SYMBOL) =>
            {
                let Node::Lit(Lit::Str(s)) = &args[1].node else {
                    return None;
                };
                match f {
                    Func::StartsWith => TradeCondition::StartsWith(s.clone()),
                    Func::EndsWith => TradeCondition::EndsWith(s.clone()),
                    _ => TradeCondition::Contains(s.clone()),
                }
            }
            _ => return None,
        })
    }

    /// Whether `t` passes.
    #[inline]
    pub fn test(&self, t: &Trade) -> bool {
        match self {
            TradeCondition::Const(b) => *b,
            TradeCondition::Float { field, op, value } => {
                let x = match field {
                    FloatField::Price => t.price,
                    FloatField::Volume => t.volume,
                };
                holds(*op, compare_floats(x, *value))
            }
            TradeCondition::Time { op, value } => holds(*op, t.ts.cmp(value)),
            TradeCondition::Symbol { op, value } => holds(*op, t.symbol.as_str().cmp(value)),
            TradeCondition::StartsWith(s) => t.symbol.starts_with(s.as_str()),
            TradeCondition::EndsWith(s) => t.symbol.ends_with(s.as_str()),
            TradeCondition::Contains(s) => t.symbol.contains(s.as_str()),
            TradeCondition::And(a, b) => a.test(t) && b.test(t),
            TradeCondition::Or(a, b) => a.test(t) || b.test(t),
            TradeCondition::Not(a) => !a.test(t),
        }
    }
}

fn column(e: &Typed) -> Option<usize> {
    match e.node {
        Node::Col(c) => Some(c),
        _ => None,
    }
}

/// `field op literal`, when the literal is of the field's type and not NULL.
fn field_vs_literal(c: usize, op: CmpOp, lit: &Typed) -> Option<TradeCondition> {
    let Node::Lit(l) = &lit.node else {
        return None;
    };
    Some(match (c, l) {
        (PRICE, Lit::Float(v)) => TradeCondition::Float {
            field: FloatField::Price,
            op,
            value: *v,
        },
        (VOLUME, Lit::Float(v)) => TradeCondition::Float {
            field: FloatField::Volume,
            op,
            value: *v,
        },
        (TIMESTAMP, Lit::Ts(v)) => TradeCondition::Time { op, value: *v },
        (SYMBOL, Lit::Str(s)) => TradeCondition::Symbol {
            op,
            value: s.clone(),
        },
        _ => return None,
    })
}

/// `a op b` as `b op' a`.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        same => same,
    }
}

fn holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::NotEq => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::LtEq => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::GtEq => o != Ordering::Less,
    }
}

/// Floats as DuckDB compares them (as [`super::eval::normalize_floats`] makes Arrow do): -0.0
/// equals 0.0, and every NaN is one value, above +∞.
fn compare_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).expect("neither is NaN"),
    }
}
