//! Evaluation of typed nodes over the columns of a batch, with Arrow's compute kernels. SQL NULL
//! semantics throughout (Kleene AND/OR; NULL in, NULL out). CASE branches and later COALESCE
//! arguments run only on the rows that reach them, so `CASE WHEN x > 0 THEN ln(x) END` never
//! fails on the rows where `x <= 0`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray, UInt32Array, new_null_array,
};
use arrow_buffer::BooleanBuffer;
use arrow_schema::ArrowError;

use super::check::{ArithOp, CmpOp, Lit, Node, Typed};
use super::types::Type;

/// The columns an expression reads, by input index (`None`: not needed), all `rows` long.
#[derive(Debug, Clone)]
pub struct Batch {
    pub columns: Vec<Option<ArrayRef>>,
    pub rows: usize,
}

impl Batch {
    /// Rows `offset..offset + len` (zero-copy).
    pub fn slice(&self, offset: usize, len: usize) -> Batch {
        Batch {
            columns: self
                .columns
                .iter()
                .map(|c| c.as_ref().map(|a| a.slice(offset, len)))
                .collect(),
            rows: len,
        }
    }

    /// The rows where `mask` is true, of the columns `needed`.
    fn filter(&self, mask: &BooleanArray, needed: &[usize]) -> Result<Batch, ArrowError> {
        let mut columns = vec![None; self.columns.len()];
        for &i in needed {
            if let Some(a) = &self.columns[i] {
                columns[i] = Some(arrow_select::filter::filter(a, mask)?);
            }
        }
        Ok(Batch {
            columns,
            rows: mask.true_count(),
        })
    }
}

fn compute(msg: impl Into<String>) -> ArrowError {
    ArrowError::ComputeError(msg.into())
}

/// True where `b` is a non-NULL true (NULL counts as false, as in WHERE).
pub fn truthy(b: &BooleanArray) -> BooleanArray {
    match b.nulls() {
        None => b.clone(),
        Some(n) => BooleanArray::new(b.values() & n.inner(), None),
    }
}

/// Floats as DuckDB compares them: -0.0 equals 0.0, and every NaN is one value, above +∞.
/// Arrow's kernels order floats by IEEE total order, so both are folded first.
pub fn normalize_floats(a: &ArrayRef) -> ArrayRef {
    match a.as_primitive_opt::<Float64Type>() {
        Some(f) if f.values().iter().any(|x| *x == 0.0 || x.is_nan()) => Arc::new(
            arrow_arith::arity::unary::<Float64Type, _, Float64Type>(f, |x| {
                if x == 0.0 {
                    0.0
                } else if x.is_nan() {
                    f64::NAN
                } else {
                    x
                }
            }),
        ),
        _ => a.clone(),
    }
}

/// A column of `n` copies of a literal.
fn literal(l: &Lit, ty: Type, n: usize) -> ArrayRef {
    match (l, ty) {
        (Lit::Null, _) => new_null_array(&ty.arrow(), n),
        (Lit::Bool(b), _) => Arc::new(BooleanArray::new(
            if *b {
                BooleanBuffer::new_set(n)
            } else {
                BooleanBuffer::new_unset(n)
            },
            None,
        )),
        (Lit::Int(i), _) | (Lit::Interval(i), _) => Arc::new(Int64Array::from_value(*i, n)),
        (Lit::Float(f), _) => Arc::new(Float64Array::from_value(*f, n)),
        (Lit::Str(s), _) => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n))),
        (Lit::Ts(t), _) => {
            Arc::new(TimestampMillisecondArray::from_value(*t, n).with_timezone("UTC"))
        }
    }
}

pub fn eval(e: &Typed, batch: &Batch) -> Result<ArrayRef, ArrowError> {
    let n = batch.rows;
    Ok(match &e.node {
        Node::Col(i) => batch.columns[*i]
            .clone()
            .ok_or_else(|| compute(format!("column {i} was not prepared")))?,
        Node::Lit(l) => literal(l, e.ty, n),
        Node::Cast { e: inner, try_ } => {
            let a = eval(inner, batch)?;
            super::cast::cast(&a, inner.ty, e.ty, *try_)?
        }
        Node::Arith(op, l, r) if e.ty == Type::Ts || (*op == ArithOp::Rem && e.ty == Type::Int) => {
            let (a, b) = (eval(l, batch)?, eval(r, batch)?);
            arith(*op, &a, &b, l.ty, e.ty)?
        }
        Node::Arith(op, l, r) => {
            let (a, b) = operands(l, r, batch, false)?;
            use arrow_arith::numeric;
            let (a, b) = (a.datum(), b.datum());
            match op {
                ArithOp::Add => numeric::add(a, b)?,
                ArithOp::Sub => numeric::sub(a, b)?,
                ArithOp::Mul => numeric::mul(a, b)?,
                ArithOp::Div => numeric::div(a, b)?,
                ArithOp::Rem => numeric::rem(a, b)?,
            }
        }
        Node::Cmp(op, l, r) => {
            let (a, b) = operands(l, r, batch, l.ty == Type::Float)?;
            let (a, b) = (a.datum(), b.datum());
            use arrow_ord::cmp;
            Arc::new(match op {
                CmpOp::Eq => cmp::eq(a, b)?,
                CmpOp::NotEq => cmp::neq(a, b)?,
                CmpOp::Lt => cmp::lt(a, b)?,
                CmpOp::LtEq => cmp::lt_eq(a, b)?,
                CmpOp::Gt => cmp::gt(a, b)?,
                CmpOp::GtEq => cmp::gt_eq(a, b)?,
            })
        }
        // The right side runs only on the rows the left side does not decide (as DuckDB: `false
        // AND ln(-1) > 0` is false, not an error).
        Node::And(l, r) => {
            let a = eval(l, batch)?;
            let need = undecided(a.as_boolean(), false);
            let b = eval_where(r, batch, &need)?;
            Arc::new(arrow_arith::boolean::and_kleene(
                a.as_boolean(),
                b.as_boolean(),
            )?)
        }
        Node::Or(l, r) => {
            let a = eval(l, batch)?;
            let need = undecided(a.as_boolean(), true);
            let b = eval_where(r, batch, &need)?;
            Arc::new(arrow_arith::boolean::or_kleene(
                a.as_boolean(),
                b.as_boolean(),
            )?)
        }
        Node::Not(x) => Arc::new(arrow_arith::boolean::not(eval(x, batch)?.as_boolean())?),
        Node::Neg(x) => arrow_arith::numeric::neg(&eval(x, batch)?)?,
        Node::IsNull { e: x, negated } => {
            let a = eval(x, batch)?;
            Arc::new(if *negated {
                arrow_arith::boolean::is_not_null(&a)?
            } else {
                arrow_arith::boolean::is_null(&a)?
            })
        }
        Node::Like {
            e: x,
            pattern,
            negated,
            ci,
        } => {
            let a = eval(x, batch)?;
            use arrow_string::like;
            // A literal pattern is compiled once, as a scalar. NB: a backslash is an ordinary
            // character in SQL LIKE (DuckDB) but Arrow's escape character: double it.
            let run = |p: &dyn arrow_array::Datum| -> Result<BooleanArray, ArrowError> {
                match (negated, ci) {
                    (false, false) => like::like(&a, p),
                    (true, false) => like::nlike(&a, p),
                    (false, true) => like::ilike(&a, p),
                    (true, true) => like::nilike(&a, p),
                }
            };
            Arc::new(match &pattern.node {
                Node::Lit(Lit::Str(s)) => run(&StringArray::new_scalar(s.replace('\\', "\\\\")))?,
                _ => {
                    let p = eval(pattern, batch)?;
                    let p: StringArray = p
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.map(|v| v.replace('\\', "\\\\")))
                        .collect();
                    run(&p)?
                }
            })
        }
        Node::Case { whens, otherwise } => {
            let mut result = new_null_array(&e.ty.arrow(), n);
            let mut remaining = BooleanArray::new(BooleanBuffer::new_set(n), None);
            for (cond, then) in whens {
                if remaining.true_count() == 0 {
                    break;
                }
                let c = eval_where(cond, batch, &remaining)?;
                let hit = arrow_arith::boolean::and(&truthy(c.as_boolean()), &remaining)?;
                if hit.true_count() == 0 {
                    continue;
                }
                result = match &then.node {
                    // A literal branch (`THEN 'up'`) as a scalar, not spread over the batch.
                    Node::Lit(l) if !matches!(l, Lit::Null) => {
                        let v = arrow_array::Scalar::new(literal(l, then.ty, 1));
                        arrow_select::zip::zip(&hit, &v, &result)?
                    }
                    _ => arrow_select::zip::zip(&hit, &eval_where(then, batch, &hit)?, &result)?,
                };
                remaining = arrow_arith::boolean::and_not(&remaining, &hit)?;
            }
            if let Some(x) = otherwise
                && remaining.true_count() > 0
            {
                result = match &x.node {
                    Node::Lit(l) if !matches!(l, Lit::Null) => {
                        let v = arrow_array::Scalar::new(literal(l, x.ty, 1));
                        arrow_select::zip::zip(&remaining, &v, &result)?
                    }
                    _ => arrow_select::zip::zip(
                        &remaining,
                        &eval_where(x, batch, &remaining)?,
                        &result,
                    )?,
                };
            }
            result
        }
        Node::Coalesce(args) => {
            let mut result = eval(&args[0], batch)?;
            for next in &args[1..] {
                let missing = arrow_arith::boolean::is_null(&result)?;
                if missing.true_count() == 0 {
                    break;
                }
                let v = eval_where(next, batch, &missing)?;
                result = arrow_select::zip::zip(&missing, &v, &result)?;
            }
            result
        }
        Node::Nullif(a, b) => {
            // NULLIF(a, b) = CASE WHEN a = b THEN NULL ELSE a END: b only where a is not NULL.
            let x = eval(a, batch)?;
            let present = arrow_arith::boolean::is_not_null(&x)?;
            let (mut l, mut r) = (x.clone(), eval_where(b, batch, &present)?);
            if a.ty == Type::Float {
                l = normalize_floats(&l);
                r = normalize_floats(&r);
            }
            let same = truthy(&arrow_ord::cmp::eq(&l, &r)?);
            arrow_select::nullif::nullif(&x, &same)?
        }
        Node::Concat {
            parts,
            null_as_empty,
        } => {
            let mut acc: Option<StringArray> = None;
            for p in parts {
                let a = eval(p, batch)?;
                let mut s = a.as_string::<i32>().clone();
                if *null_as_empty && s.null_count() > 0 {
                    s = s.iter().map(|v| Some(v.unwrap_or(""))).collect();
                }
                acc = Some(match acc {
                    None => s,
                    Some(prev) => arrow_string::concat_elements::concat_elements_utf8(&prev, &s)?,
                });
            }
            Arc::new(
                acc.unwrap_or_else(|| StringArray::from_iter_values(std::iter::repeat_n("", n))),
            )
        }
        Node::Call(func, args) => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, batch)?);
            }
            super::func::call(*func, &values, e.ty, n)?
        }
    })
}

/// The rows a boolean column leaves open for AND (`decided_by: false`: rows not false) or OR
/// (`decided_by: true`: rows not true).
fn undecided(a: &BooleanArray, decided_by: bool) -> BooleanArray {
    let values = if decided_by {
        !a.values()
    } else {
        a.values().clone()
    };
    match a.nulls() {
        // NULL rows stay open: their result depends on the right side.
        Some(n) => BooleanArray::new(&values | &!n.inner(), None),
        None => BooleanArray::new(values, None),
    }
}

/// A kernel's operand: a column, or a literal as a one-value scalar (not spread over the batch).
enum Operand {
    Array(ArrayRef),
    Scalar(arrow_array::Scalar<ArrayRef>),
}

impl Operand {
    fn datum(&self) -> &dyn arrow_array::Datum {
        match self {
            Operand::Array(a) => a,
            Operand::Scalar(s) => s,
        }
    }
}

/// Both operands of a binary kernel (floats folded for comparison when `normalize`). NB: two
/// literals would give a one-row result, so then the left one is spread.
fn operands(
    l: &Typed,
    r: &Typed,
    batch: &Batch,
    normalize: bool,
) -> Result<(Operand, Operand), ArrowError> {
    let one = |t: &Typed, scalar_ok: bool| -> Result<Operand, ArrowError> {
        let fold = |a: ArrayRef| if normalize { normalize_floats(&a) } else { a };
        Ok(match &t.node {
            Node::Lit(lit) if scalar_ok && !matches!(lit, Lit::Null) => {
                Operand::Scalar(arrow_array::Scalar::new(fold(literal(lit, t.ty, 1))))
            }
            _ => Operand::Array(fold(eval(t, batch)?)),
        })
    };
    let a = one(l, !matches!(r.node, Node::Lit(_)))?;
    let b = one(r, true)?;
    Ok((a, b))
}

/// Whether evaluating `t` can fail for some row (overflow, a math domain error, a cast); what
/// cannot fail is evaluated over the whole batch even where its value is not needed.
fn can_fail(t: &Typed) -> bool {
    use super::func::Func;
    let any = |ts: &[Typed]| ts.iter().any(can_fail);
    match &t.node {
        Node::Col(_) | Node::Lit(_) => false,
        Node::Cast { e, try_ } => {
            can_fail(e)
                || (!try_ && matches!((e.ty, t.ty), (Type::Float, Type::Int) | (Type::Str, _)))
        }
        Node::Arith(op, a, b) => {
            can_fail(a)
                || can_fail(b)
                || t.ty == Type::Ts
                || (t.ty == Type::Int && matches!(op, ArithOp::Add | ArithOp::Sub | ArithOp::Mul))
        }
        Node::Neg(x) => can_fail(x) || t.ty == Type::Int,
        Node::Cmp(_, a, b) | Node::And(a, b) | Node::Or(a, b) | Node::Nullif(a, b) => {
            can_fail(a) || can_fail(b)
        }
        Node::Not(x) | Node::IsNull { e: x, .. } => can_fail(x),
        Node::Like { e, pattern, .. } => can_fail(e) || can_fail(pattern),
        Node::Case { whens, otherwise } => {
            whens.iter().any(|(c, v)| can_fail(c) || can_fail(v))
                || otherwise.as_ref().is_some_and(|o| can_fail(o))
        }
        Node::Coalesce(args) | Node::Concat { parts: args, .. } => any(args),
        Node::Call(f, args) => {
            any(args)
                || matches!(f, Func::Sqrt | Func::Ln)
                || (t.ty == Type::Int && matches!(f, Func::Abs | Func::Round(_)))
        }
    }
}

/// `e` evaluated only on the rows where `mask` is true; NULL elsewhere. (What cannot fail is
/// evaluated on every row: cheaper than selecting rows, and the same values where they count.)
fn eval_where(e: &Typed, batch: &Batch, mask: &BooleanArray) -> Result<ArrayRef, ArrowError> {
    let hits = mask.true_count();
    if hits == batch.rows || (hits > 0 && !can_fail(e)) {
        return eval(e, batch);
    }
    if hits == 0 {
        return Ok(new_null_array(&e.ty.arrow(), batch.rows));
    }
    let mut needed = Vec::new();
    super::collect_columns(e, &mut needed);
    let part = eval(e, &batch.filter(mask, &needed)?)?;
    let mut k = 0u32;
    let indices: UInt32Array = mask
        .values()
        .iter()
        .map(|m| {
            m.then(|| {
                k += 1;
                k - 1
            })
        })
        .collect();
    arrow_select::take::take(&part, &indices, None)
}

fn arith(
    op: ArithOp,
    a: &ArrayRef,
    b: &ArrayRef,
    lty: Type,
    ty: Type,
) -> Result<ArrayRef, ArrowError> {
    use arrow_arith::numeric;
    if ty == Type::Ts {
        // timestamp ± interval: on the milliseconds, checked.
        let t = a.as_primitive::<TimestampMillisecondType>();
        let ms = Int64Array::new(t.values().clone(), t.nulls().cloned());
        let d = b.as_primitive::<Int64Type>();
        let out = if op == ArithOp::Add {
            numeric::add(&ms, d)?
        } else {
            numeric::sub(&ms, d)?
        };
        let out = out.as_primitive::<Int64Type>();
        return Ok(Arc::new(
            TimestampMillisecondArray::new(out.values().clone(), out.nulls().cloned())
                .with_timezone("UTC"),
        ));
    }
    let _ = lty;
    Ok(match op {
        ArithOp::Add => numeric::add(a, b)?,
        ArithOp::Sub => numeric::sub(a, b)?,
        ArithOp::Mul => numeric::mul(a, b)?,
        ArithOp::Div => numeric::div(a, b)?,
        ArithOp::Rem if ty == Type::Int => {
            // x % 0 is NULL (as in DuckDB), not an error; i64::MIN % -1 is 0.
            let (x, y) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
            let out: Int64Array = x
                .iter()
                .zip(y.iter())
                .map(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) if y != 0 => Some(x.wrapping_rem(y)),
                    _ => None,
                })
                .collect();
            Arc::new(out)
        }
        ArithOp::Rem => numeric::rem(a, b)?,
    })
}
