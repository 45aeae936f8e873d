//! SQL expressions in specs: parsed by `sqlparser`, type-checked against the input stream's
//! schema at `validate`, evaluated over the columns of a batch with Arrow's compute kernels.
//!
//! ```text
//! "close / open - 1"  →  sqlparser AST  →  check: typed nodes (columns resolved, bigint → double
//!                                            made explicit)  →  eval: Arrow arrays in, one out
//! ```
//! Semantics follow DuckDB (the tests compare with it): SQL NULLs, `/` is double division,
//! `x % 0` is NULL, `ln(0)`/`sqrt(-1)`/bigint overflow/bad casts are errors. Nothing depends on
//! the clock or randomness, so results are the same for any number of workers.

mod cast;
mod check;
pub use self::check::parse_timestamp;
mod columns;
mod eval;
mod func;
pub mod trades;
pub mod types;

#[cfg(test)]
mod tests;

use arrow_array::ArrayRef;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

pub use self::check::FUNCTIONS;
pub use self::columns::{from_rows, from_trades, values_of};
pub use self::eval::{Batch, truthy};
use self::types::Type;
use crate::base::record::{Schema, Value};

/// Expressions nested deeper than this are refused.
pub const MAX_DEPTH: usize = 256;
/// Longer expression strings are refused before parsing.
pub const MAX_LEN: usize = 64 * 1024;

/// A problem in an expression; `line`/`column` are 1-based within the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A checked expression, ready to evaluate over batches of its input.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    root: check::Typed,
    columns: Vec<usize>,
}

impl Expr {
    /// Parses and type-checks `text` against `schema`; every problem found is returned.
    pub fn compile(text: &str, schema: &Schema) -> Result<Expr, Vec<ExprError>> {
        // NB: parsing, checking and dropping a syntax tree recurse once per level; an absurd
        // expression (thousands of levels) must get its error, not overflow a small stack.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("tickflow-expr".into())
                .stack_size(64 << 20)
                .spawn_scoped(s, || Self::compile_here(text, schema))
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(vec![ExprError {
                            line: 1,
                            column: 1,
                            message: "the expression could not be checked".into(),
                        }])
                    })
                })
                .unwrap_or_else(|_| Self::compile_here(text, schema))
        })
    }

    fn compile_here(text: &str, schema: &Schema) -> Result<Expr, Vec<ExprError>> {
        let at_start = |message: String| {
            vec![ExprError {
                line: 1,
                column: 1,
                message,
            }]
        };
        if text.len() > MAX_LEN {
            return Err(at_start(format!(
                "the expression is {} bytes long; at most {MAX_LEN} are allowed",
                text.len()
            )));
        }
        if text.trim().is_empty() {
            return Err(at_start("the expression is empty".into()));
        }
        let dialect = DuckDbDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(MAX_DEPTH)
            .try_with_sql(text)
            .map_err(|e| at_start(parse_message(&e)))?;
        let ast = parser.parse_expr().map_err(|e| {
            let msg = parse_message(&e);
            let (line, column) = parse_location(&msg);
            vec![ExprError {
                line,
                column,
                message: if msg.contains("recursion limit") {
                    format!("the expression is nested more than {MAX_DEPTH} levels deep")
                } else {
                    strip_location(&msg)
                },
            }]
        })?;
        let next = parser.peek_token();
        if next.token != sqlparser::tokenizer::Token::EOF {
            return Err(vec![ExprError {
                line: next.span.start.line as usize,
                column: next.span.start.column as usize,
                message: format!("unexpected `{}` after the expression", next.token),
            }]);
        }
        let mut checker = check::Checker::new(schema);
        let root = checker.check(&ast);
        match root {
            Some(root) if checker.errors.is_empty() => {
                let root = fold(root);
                let mut columns = Vec::new();
                collect_columns(&root, &mut columns);
                columns.sort_unstable();
                columns.dedup();
                Ok(Expr {
                    text: text.to_string(),
                    root,
                    columns,
                })
            }
            _ => {
                let mut errors = checker.errors;
                if errors.is_empty() {
                    errors = at_start("the expression could not be checked".into());
                }
                Err(errors)
            }
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The type of the expression's value.
    pub fn ty(&self) -> Type {
        self.root.ty
    }

    /// Whether this is exactly one input column (a rename or a copy).
    pub fn as_column(&self) -> Option<usize> {
        match self.root.node {
            check::Node::Col(i) => Some(i),
            _ => None,
        }
    }

    /// The input columns the expression reads (sorted).
    /// This condition compiled against a trade's fields, when it can be (an expression over
    /// [`Schema::trades`]; see [`trades`]).
    pub fn trade_condition(&self) -> Option<trades::TradeCondition> {
        trades::TradeCondition::compile(&self.root)
    }

    pub fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// Evaluates the expression over `batch` (which holds at least [`Expr::columns`]): one
    /// value per row. An error fails the whole batch; see [`Expr::eval_rows`].
    pub fn eval(&self, batch: &Batch) -> Result<ArrayRef, arrow_schema::ArrowError> {
        eval::eval(&self.root, batch)
    }

    /// Evaluates over `batch`; when that fails, evaluates row by row so that only the rows that
    /// fail are reported (`Err` with the row index and the message) and the others keep their
    /// values. The result has one entry per row.
    pub fn eval_rows(&self, batch: &Batch) -> Result<ArrayRef, Vec<(usize, ArrayRef, String)>> {
        match self.eval(batch) {
            Ok(a) => Ok(a),
            Err(_) => {
                let mut per_row = Vec::with_capacity(batch.rows);
                for r in 0..batch.rows {
                    per_row.push((r, self.eval(&batch.slice(r, 1))));
                }
                Err(per_row
                    .into_iter()
                    .map(|(r, res)| match res {
                        Ok(a) => (r, a, String::new()),
                        Err(e) => (
                            r,
                            arrow_array::new_null_array(&self.ty().arrow(), 1),
                            error_text(&e),
                        ),
                    })
                    .collect())
            }
        }
    }
}

/// An Arrow error as a user reads it (without the "Compute error: " prefix).
pub fn error_text(e: &arrow_schema::ArrowError) -> String {
    use arrow_schema::ArrowError as A;
    match e {
        A::ComputeError(m) | A::CastError(m) | A::InvalidArgumentError(m) => m.clone(),
        A::DivideByZero => "division by zero".into(),
        A::ArithmeticOverflow(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Constant folding, as SQL engines do it: a subexpression without columns is computed once
/// (unless it fails: then it fails on every row, as it would unfolded), and an operator that
/// gives NULL for a NULL operand gives NULL without computing its other operands.
fn fold(t: check::Typed) -> check::Typed {
    use check::{Lit, Node as N, Typed};
    let ty = t.ty;
    let null = || Typed {
        node: N::Lit(Lit::Null),
        ty,
    };
    let is_null = |t: &Typed| matches!(t.node, N::Lit(Lit::Null));
    let node = match t.node {
        N::Cast { e, try_ } => N::Cast {
            e: Box::new(fold(*e)),
            try_,
        },
        N::Arith(op, a, b) => N::Arith(op, Box::new(fold(*a)), Box::new(fold(*b))),
        N::Cmp(op, a, b) => N::Cmp(op, Box::new(fold(*a)), Box::new(fold(*b))),
        N::And(a, b) => N::And(Box::new(fold(*a)), Box::new(fold(*b))),
        N::Or(a, b) => N::Or(Box::new(fold(*a)), Box::new(fold(*b))),
        N::Not(a) => N::Not(Box::new(fold(*a))),
        N::Neg(a) => N::Neg(Box::new(fold(*a))),
        N::IsNull { e, negated } => N::IsNull {
            e: Box::new(fold(*e)),
            negated,
        },
        N::Like {
            e,
            pattern,
            negated,
            ci,
        } => N::Like {
            e: Box::new(fold(*e)),
            pattern: Box::new(fold(*pattern)),
            negated,
            ci,
        },
        N::Case { whens, otherwise } => N::Case {
            whens: whens.into_iter().map(|(c, v)| (fold(c), fold(v))).collect(),
            otherwise: otherwise.map(|o| Box::new(fold(*o))),
        },
        N::Coalesce(args) => N::Coalesce(args.into_iter().map(fold).collect()),
        N::Nullif(a, b) => N::Nullif(Box::new(fold(*a)), Box::new(fold(*b))),
        N::Concat {
            parts,
            null_as_empty,
        } => N::Concat {
            parts: parts.into_iter().map(fold).collect(),
            null_as_empty,
        },
        N::Call(f, args) => N::Call(f, args.into_iter().map(fold).collect()),
        leaf => leaf,
    };
    // NULL in, NULL out (without computing the other operands).
    let strict_null = match &node {
        N::Cast { e, .. } | N::Neg(e) | N::Not(e) => is_null(e),
        N::Arith(_, a, b) | N::Cmp(_, a, b) => is_null(a) || is_null(b),
        N::Like { e, pattern, .. } => is_null(e) || is_null(pattern),
        N::Nullif(a, _) => is_null(a),
        N::Concat {
            parts,
            null_as_empty: false,
        } => parts.iter().any(is_null),
        N::Call(f, args) => {
            !matches!(f, func::Func::Least | func::Func::Greatest) && args.iter().any(is_null)
        }
        _ => false,
    };
    if strict_null {
        return null();
    }
    let t = Typed { node, ty };
    if matches!(t.node, N::Lit(_)) || ty == types::Type::Interval || ty == types::Type::StrList {
        return t;
    }
    let mut columns = Vec::new();
    collect_columns(&t, &mut columns);
    if !columns.is_empty() {
        return t;
    }
    match eval::eval(
        &t,
        &Batch {
            columns: Vec::new(),
            rows: 1,
        },
    ) {
        Ok(a) => {
            let lit = match values_of(&a, ty).remove(0) {
                Value::Null => Lit::Null,
                Value::Bool(b) => Lit::Bool(b),
                Value::I64(i) => Lit::Int(i),
                Value::F64(x) => Lit::Float(x),
                Value::Str(s) => Lit::Str(s.to_string()),
                Value::Ts(ms) => Lit::Ts(ms),
                Value::StrList(_) => return t,
            };
            Typed {
                node: N::Lit(lit),
                ty,
            }
        }
        Err(_) => t,
    }
}

pub(crate) fn collect_columns(t: &check::Typed, out: &mut Vec<usize>) {
    use check::Node as N;
    match &t.node {
        N::Col(i) => out.push(*i),
        N::Lit(_) => {}
        N::Cast { e, .. } | N::Not(e) | N::Neg(e) | N::IsNull { e, .. } => collect_columns(e, out),
        N::Arith(_, a, b) | N::Cmp(_, a, b) | N::And(a, b) | N::Or(a, b) | N::Nullif(a, b) => {
            collect_columns(a, out);
            collect_columns(b, out);
        }
        N::Like { e, pattern, .. } => {
            collect_columns(e, out);
            collect_columns(pattern, out);
        }
        N::Case { whens, otherwise } => {
            for (c, v) in whens {
                collect_columns(c, out);
                collect_columns(v, out);
            }
            if let Some(o) = otherwise {
                collect_columns(o, out);
            }
        }
        N::Coalesce(args) | N::Call(_, args) => args.iter().for_each(|a| collect_columns(a, out)),
        N::Concat { parts, .. } => parts.iter().for_each(|a| collect_columns(a, out)),
    }
}

fn parse_message(e: &sqlparser::parser::ParserError) -> String {
    use sqlparser::parser::ParserError as P;
    match e {
        P::TokenizerError(m) | P::ParserError(m) => m.clone(),
        P::RecursionLimitExceeded => "recursion limit exceeded".into(),
    }
}

/// sqlparser appends " at Line: L, Column: C" to its messages.
fn parse_location(msg: &str) -> (usize, usize) {
    let find = |key: &str| {
        msg.rfind(key).and_then(|i| {
            msg[i + key.len()..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
        })
    };
    (find("Line:").unwrap_or(1), find("Column:").unwrap_or(1))
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at Line:") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
