//! From `sqlparser`'s AST to typed nodes: names resolved against the input schema, every
//! operator and function checked for its argument types, implicit widening (`bigint` →
//! `double`) made explicit, and every problem reported with its place in the expression.

use sqlparser::ast::{
    self, BinaryOperator, CastKind, CeilFloorKind, DataType, DateTimeField, FunctionArg,
    FunctionArgExpr, FunctionArguments, Spanned, UnaryOperator, Value,
};

use super::func::{DatePart, Func, TruncUnit};
use super::types::{Type, common};
use super::{ExprError, MAX_DEPTH};
use crate::base::diagnostic::suggest;
use crate::base::record::Schema;

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// ms since the epoch.
    Ts(i64),
    /// ms.
    Interval(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A typed expression node.
#[derive(Debug, Clone)]
pub struct Typed {
    pub node: Node,
    pub ty: Type,
}

#[derive(Debug, Clone)]
pub enum Node {
    /// The input column at this index.
    Col(usize),
    Lit(Lit),
    /// `CAST` (or an implicit widening); `try_cast` gives NULL instead of an error.
    Cast {
        e: Box<Typed>,
        try_: bool,
    },
    /// Both operands have the node's type, except `timestamp ± interval`.
    Arith(ArithOp, Box<Typed>, Box<Typed>),
    /// Both operands have one type.
    Cmp(CmpOp, Box<Typed>, Box<Typed>),
    And(Box<Typed>, Box<Typed>),
    Or(Box<Typed>, Box<Typed>),
    Not(Box<Typed>),
    Neg(Box<Typed>),
    IsNull {
        e: Box<Typed>,
        negated: bool,
    },
    Like {
        e: Box<Typed>,
        pattern: Box<Typed>,
        negated: bool,
        ci: bool,
    },
    /// Searched CASE; the simple form is rewritten to it. A branch is evaluated only for the
    /// rows that reach it.
    Case {
        whens: Vec<(Typed, Typed)>,
        otherwise: Option<Box<Typed>>,
    },
    /// Later arguments are evaluated only for the rows still NULL.
    Coalesce(Vec<Typed>),
    Nullif(Box<Typed>, Box<Typed>),
    /// Strings joined; `concat()` reads NULL as '', `||` gives NULL.
    Concat {
        parts: Vec<Typed>,
        null_as_empty: bool,
    },
    Call(Func, Vec<Typed>),
}

fn typed(node: Node, ty: Type) -> Typed {
    Typed { node, ty }
}

/// The functions expressions may call, for "did you mean" and the docs.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "sqrt",
    "ln",
    "exp",
    "power",
    "pow",
    "least",
    "greatest",
    "starts_with",
    "ends_with",
    "contains",
    "split_part",
    "upper",
    "lower",
    "length",
    "concat",
    "coalesce",
    "nullif",
    "date_trunc",
    "date_part",
    "epoch_ms",
];

/// Functions that exist in SQL engines but are refused because their result would differ
/// between runs or workers.
const NONDETERMINISTIC: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "random",
    "rand",
    "uuid",
    "gen_random_uuid",
    "today",
    "localtimestamp",
    "get_current_timestamp",
];

pub struct Checker<'a> {
    schema: &'a Schema,
    pub errors: Vec<ExprError>,
    depth: usize,
}

impl<'a> Checker<'a> {
    pub fn new(schema: &'a Schema) -> Self {
        Checker {
            schema,
            errors: Vec::new(),
            depth: 0,
        }
    }

    fn err(&mut self, at: &impl Spanned, message: impl Into<String>) -> Option<Typed> {
        self.err_at(at.span(), message)
    }

    fn err_at(
        &mut self,
        span: sqlparser::tokenizer::Span,
        message: impl Into<String>,
    ) -> Option<Typed> {
        let loc = span.start;
        self.errors.push(ExprError {
            line: loc.line as usize,
            column: loc.column as usize,
            message: message.into(),
        });
        None
    }

    pub fn check(&mut self, e: &ast::Expr) -> Option<Typed> {
        self.depth += 1;
        let out = if self.depth > MAX_DEPTH {
            self.err(
                e,
                format!("the expression is nested more than {MAX_DEPTH} levels deep"),
            )
        } else {
            self.check_inner(e)
        };
        self.depth -= 1;
        out
    }

    fn check_inner(&mut self, e: &ast::Expr) -> Option<Typed> {
        use ast::Expr as E;
        match e {
            E::Identifier(ident) => self.column(ident),
            E::CompoundIdentifier(parts) => self.err(
                e,
                format!(
                    "qualified names like `{e}` are not supported; name the column alone (`{}`)",
                    parts.last().map(|p| p.value.as_str()).unwrap_or("")
                ),
            ),
            E::Nested(inner) => self.check(inner),
            E::Value(v) => self.literal(e, &v.value),
            E::TypedString(ts) => {
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => {
                        return self.err(e, format!("expected a quoted string, found {other}"));
                    }
                };
                match &ts.data_type {
                    DataType::Timestamp(..) | DataType::Datetime(_) | DataType::Date => {
                        match parse_timestamp(&text) {
                            Some(ms) => Some(typed(Node::Lit(Lit::Ts(ms)), Type::Ts)),
                            None => self.err(
                                e,
                                format!("`{text}` is not a timestamp (e.g. '2026-12-01 14:30:00')"),
                            ),
                        }
                    }
                    other => {
                        let to = self.data_type(e, other)?;
                        let lit = typed(Node::Lit(Lit::Str(text)), Type::Str);
                        self.cast(e, lit, to, false)
                    }
                }
            }
            E::Interval(iv) => match interval_ms(iv) {
                Ok(ms) => Some(typed(Node::Lit(Lit::Interval(ms)), Type::Interval)),
                Err(msg) => self.err(e, msg),
            },
            E::UnaryOp { op, expr } => {
                // -9223372036854775808: the one integer whose digits alone do not fit.
                if *op == UnaryOperator::Minus
                    && let ast::Expr::Value(v) = expr.as_ref()
                    && v.value == Value::Number("9223372036854775808".into(), false)
                {
                    return Some(typed(Node::Lit(Lit::Int(i64::MIN)), Type::Int));
                }
                let inner = self.check(expr)?;
                match op {
                    UnaryOperator::Not => {
                        let inner = self.expect_bool(expr, inner, "NOT")?;
                        Some(typed(Node::Not(Box::new(inner)), Type::Bool))
                    }
                    UnaryOperator::Minus | UnaryOperator::Plus => {
                        if let (UnaryOperator::Minus, Node::Lit(l)) = (op, &inner.node) {
                            // -9223372036854775808 and friends: fold into the literal.
                            match l {
                                Lit::Int(i) => {
                                    return Some(typed(
                                        Node::Lit(Lit::Int(i.wrapping_neg())),
                                        Type::Int,
                                    ));
                                }
                                Lit::Float(f) => {
                                    return Some(typed(Node::Lit(Lit::Float(-f)), Type::Float));
                                }
                                Lit::Interval(i) => {
                                    return Some(typed(
                                        Node::Lit(Lit::Interval(i.wrapping_neg())),
                                        Type::Interval,
                                    ));
                                }
                                _ => {}
                            }
                        }
                        if !(inner.ty.is_numeric() || inner.ty == Type::Null) {
                            return self.err(
                                e,
                                format!("`{op}` needs a number, `{expr}` is {}", article(inner.ty)),
                            );
                        }
                        if *op == UnaryOperator::Plus {
                            return Some(inner);
                        }
                        let ty = if inner.ty == Type::Null {
                            Type::Int
                        } else {
                            inner.ty
                        };
                        let inner = coerce(inner, ty);
                        Some(typed(Node::Neg(Box::new(inner)), ty))
                    }
                    other => self.err(e, format!("the operator `{other}` is not supported")),
                }
            }
            E::BinaryOp { left, op, right } => self.binary(e, left, op, right),
            E::IsNull(inner) | E::IsNotNull(inner) => {
                let t = self.check(inner)?;
                Some(typed(
                    Node::IsNull {
                        e: Box::new(t),
                        negated: matches!(e, E::IsNotNull(_)),
                    },
                    Type::Bool,
                ))
            }
            E::IsTrue(inner) | E::IsFalse(inner) | E::IsNotTrue(inner) | E::IsNotFalse(inner) => {
                // x IS TRUE = coalesce(x, false); x IS NOT TRUE = NOT coalesce(x, false) ...
                let t = self.check(inner)?;
                let t = self.expect_bool(inner, t, "IS TRUE/FALSE")?;
                let want_true = matches!(e, E::IsTrue(_) | E::IsNotTrue(_));
                let base = if want_true {
                    t
                } else {
                    typed(Node::Not(Box::new(t)), Type::Bool)
                };
                let known = typed(
                    Node::Coalesce(vec![base, typed(Node::Lit(Lit::Bool(false)), Type::Bool)]),
                    Type::Bool,
                );
                Some(if matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)) {
                    typed(Node::Not(Box::new(known)), Type::Bool)
                } else {
                    known
                })
            }
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
                // a IS NOT DISTINCT FROM b: equal, or both NULL.
                let (ta, tb) = (self.check(a)?, self.check(b)?);
                let (ta, tb) = self.unify(e, ta, tb, "IS DISTINCT FROM")?;
                let both_null = typed(
                    Node::And(
                        Box::new(typed(
                            Node::IsNull {
                                e: Box::new(ta.clone()),
                                negated: false,
                            },
                            Type::Bool,
                        )),
                        Box::new(typed(
                            Node::IsNull {
                                e: Box::new(tb.clone()),
                                negated: false,
                            },
                            Type::Bool,
                        )),
                    ),
                    Type::Bool,
                );
                let eq = typed(Node::Cmp(CmpOp::Eq, Box::new(ta), Box::new(tb)), Type::Bool);
                let eq = typed(
                    Node::Coalesce(vec![eq, typed(Node::Lit(Lit::Bool(false)), Type::Bool)]),
                    Type::Bool,
                );
                let same = typed(Node::Or(Box::new(eq), Box::new(both_null)), Type::Bool);
                Some(if matches!(e, E::IsDistinctFrom(..)) {
                    typed(Node::Not(Box::new(same)), Type::Bool)
                } else {
                    same
                })
            }
            E::In {
                expr,
                target,
                negated,
                ..
            } => {
                let list = match target {
                    ast::InTarget::List(list) => list,
                    _ => return self.err(e, "IN takes a list of values here (no subqueries)"),
                };
                let needle = self.check(expr)?;
                let mut any: Option<Typed> = None;
                for item in list {
                    let Some(t) = self.check(item) else { continue };
                    let Some((a, b)) = self.unify(item, needle.clone(), t, "IN") else {
                        continue;
                    };
                    let eq = typed(Node::Cmp(CmpOp::Eq, Box::new(a), Box::new(b)), Type::Bool);
                    any = Some(match any {
                        None => eq,
                        Some(prev) => typed(Node::Or(Box::new(prev), Box::new(eq)), Type::Bool),
                    });
                }
                let any = any?;
                Some(if *negated {
                    typed(Node::Not(Box::new(any)), Type::Bool)
                } else {
                    any
                })
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.check(expr)?;
                let lo = self.check(low)?;
                let hi = self.check(high)?;
                let (x1, lo) = self.unify(low.as_ref(), x.clone(), lo, "BETWEEN")?;
                let (x2, hi) = self.unify(high.as_ref(), x, hi, "BETWEEN")?;
                let ge = typed(
                    Node::Cmp(CmpOp::GtEq, Box::new(x1), Box::new(lo)),
                    Type::Bool,
                );
                let le = typed(
                    Node::Cmp(CmpOp::LtEq, Box::new(x2), Box::new(hi)),
                    Type::Bool,
                );
                let both = typed(Node::And(Box::new(ge), Box::new(le)), Type::Bool);
                Some(if *negated {
                    typed(Node::Not(Box::new(both)), Type::Bool)
                } else {
                    both
                })
            }
            E::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | E::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return self.err(e, "LIKE ANY and ESCAPE are not supported");
                }
                let x = self.check(expr)?;
                let p = self.check(pattern)?;
                let x = self.expect(expr, x, Type::Str, "LIKE")?;
                let p = self.expect(pattern, p, Type::Str, "LIKE")?;
                Some(typed(
                    Node::Like {
                        e: Box::new(x),
                        pattern: Box::new(p),
                        negated: *negated,
                        ci: matches!(e, E::ILike { .. }),
                    },
                    Type::Bool,
                ))
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = match operand {
                    Some(o) => Some((o.as_ref(), self.check(o)?)),
                    None => None,
                };
                let mut whens = Vec::new();
                let mut results = Vec::new();
                for cw in conditions {
                    let cond = self.check(&cw.condition);
                    let result = self.check(&cw.result);
                    let (Some(cond), Some(result)) = (cond, result) else {
                        continue;
                    };
                    let cond = match &operand {
                        Some((o, t)) => {
                            let (a, b) = match self.unify(*o, t.clone(), cond, "CASE") {
                                Some(x) => x,
                                None => continue,
                            };
                            typed(Node::Cmp(CmpOp::Eq, Box::new(a), Box::new(b)), Type::Bool)
                        }
                        None => match self.expect_bool(&cw.condition, cond, "WHEN") {
                            Some(c) => c,
                            None => continue,
                        },
                    };
                    whens.push(cond);
                    results.push((&cw.result, result));
                }
                let otherwise = match else_result {
                    Some(x) => Some((x.as_ref(), self.check(x)?)),
                    None => None,
                };
                if whens.len() != conditions.len() {
                    return None;
                }
                let mut ty = Type::Null;
                for (at, r) in results.iter().chain(otherwise.iter()) {
                    match common(ty, r.ty) {
                        Some(t) => ty = t,
                        None => {
                            return self.err(
                                *at,
                                format!(
                                    "CASE branches must have one type: {} and {} do not mix",
                                    ty.name(),
                                    r.ty.name()
                                ),
                            );
                        }
                    }
                }
                let whens = whens
                    .into_iter()
                    .zip(results)
                    .map(|(c, (_, r))| (c, coerce(r, ty)))
                    .collect();
                Some(typed(
                    Node::Case {
                        whens,
                        otherwise: otherwise.map(|(_, t)| Box::new(coerce(t, ty))),
                    },
                    ty,
                ))
            }
            E::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return self.err(e, "CAST ... FORMAT is not supported");
                }
                let inner = self.check(expr)?;
                let to = self.data_type(e, data_type)?;
                let try_ = matches!(kind, CastKind::TryCast | CastKind::SafeCast);
                self.cast(e, inner, to, try_)
            }
            E::Extract { field, expr, .. } => {
                let part = match date_part(field) {
                    Some(p) => p,
                    None => {
                        return self.err(e, format!("cannot extract `{field}` from a timestamp"));
                    }
                };
                let x = self.check(expr)?;
                let x = self.expect(expr, x, Type::Ts, "EXTRACT")?;
                Some(typed(
                    Node::Call(Func::Extract(part), vec![x]),
                    part.result_type(),
                ))
            }
            E::Floor { expr, field } | E::Ceil { expr, field } => {
                match field {
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {}
                    _ => {
                        return self
                            .err(e, "floor/ceil take one number (use round(x, n) for digits)");
                    }
                }
                let floor = matches!(e, E::Floor { .. });
                let x = self.check(expr)?;
                self.call_numeric(
                    e,
                    if floor { Func::Floor } else { Func::Ceil },
                    vec![(expr.as_ref(), x)],
                )
            }
            E::Function(f) => self.function(e, f),
            E::Subquery(_) | E::Exists { .. } => {
                self.err(e, "subqueries are not supported in expressions")
            }
            other => self.err(
                other,
                format!("`{other}` is not supported in tickflow expressions"),
            ),
        }
    }

    fn column(&mut self, ident: &ast::Ident) -> Option<Typed> {
        let name = ident.value.as_str();
        let exact = self.schema.index_of(name);
        // Unquoted names are case-insensitive in SQL: take the one column that matches.
        let found = exact.or_else(|| {
            if ident.quote_style.is_some() {
                return None;
            }
            let mut hits = self
                .schema
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name.eq_ignore_ascii_case(name));
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        });
        match found {
            Some(i) => Some(typed(
                Node::Col(i),
                Type::of_field(self.schema.fields[i].ty),
            )),
            None => {
                let hint = if FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) {
                    format!("; `{name}` is a function: call it as `{name}(...)`")
                } else {
                    suggest(name, self.schema.names())
                };
                self.err_at(ident.span, format!("unknown column `{name}`{hint}"))
            }
        }
    }

    fn literal(&mut self, at: &ast::Expr, v: &Value) -> Option<Typed> {
        match v {
            Value::Number(text, _) => {
                let float = text.contains(['.', 'e', 'E']);
                if !float && let Ok(i) = text.parse::<i64>() {
                    return Some(typed(Node::Lit(Lit::Int(i)), Type::Int));
                }
                if !float {
                    return self.err(at, format!("the integer `{text}` does not fit in a bigint"));
                }
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => Some(typed(Node::Lit(Lit::Float(f)), Type::Float)),
                    _ => self.err(at, format!("`{text}` is not a finite number")),
                }
            }
            Value::SingleQuotedString(s) => Some(typed(Node::Lit(Lit::Str(s.clone())), Type::Str)),
            Value::Boolean(b) => Some(typed(Node::Lit(Lit::Bool(*b)), Type::Bool)),
            Value::Null => Some(typed(Node::Lit(Lit::Null), Type::Null)),
            Value::DoubleQuotedString(s) => self.err(
                at,
                format!("\"{s}\" is a quoted name in SQL; write strings in single quotes: '{s}'"),
            ),
            other => self.err(at, format!("the literal `{other}` is not supported")),
        }
    }

    fn data_type(&mut self, at: &ast::Expr, dt: &DataType) -> Option<Type> {
        use DataType as D;
        Some(match dt {
            D::BigInt(_)
            | D::Int(_)
            | D::Integer(_)
            | D::Int64
            | D::SmallInt(_)
            | D::TinyInt(_)
            | D::Int8(_)
            | D::Int16
            | D::Int32
            | D::Int4(_)
            | D::Int2(_)
            | D::HugeInt => Type::Int,
            D::Double(_)
            | D::DoublePrecision
            | D::Float(_)
            | D::Float64
            | D::Real
            | D::Float8
            | D::Float4
            | D::Float32 => Type::Float,
            D::Varchar(_)
            | D::Text
            | D::String(_)
            | D::Char(_)
            | D::CharVarying(_)
            | D::Character(_)
            | D::CharacterVarying(_)
            | D::Nvarchar(_) => Type::Str,
            D::Boolean | D::Bool => Type::Bool,
            D::Timestamp(..) | D::Datetime(_) | D::TimestampNtz(_) => Type::Ts,
            other => {
                self.err(
                    at,
                    format!(
                        "cannot cast to `{other}`: the types are bigint, double, varchar, boolean and timestamp"
                    ),
                );
                return None;
            }
        })
    }

    /// An explicit CAST.
    fn cast(&mut self, at: &ast::Expr, inner: Typed, to: Type, try_: bool) -> Option<Typed> {
        let from = inner.ty;
        let ok = match (from, to) {
            _ if from == to => return Some(inner),
            (Type::Null, _) => return Some(typed(Node::Lit(Lit::Null), to)),
            (Type::Interval | Type::StrList, _)
            | (_, Type::Interval | Type::StrList | Type::Null) => false,
            (Type::Ts, Type::Int | Type::Float | Type::Bool)
            | (Type::Int | Type::Float | Type::Bool, Type::Ts) => {
                return self.err(
                    at,
                    format!(
                        "cannot cast {} to {}: use epoch_ms(x) to turn timestamps into milliseconds and back",
                        from.name(),
                        to.name()
                    ),
                );
            }
            _ => true,
        };
        if !ok {
            return self.err(at, format!("cannot cast {} to {}", from.name(), to.name()));
        }
        Some(typed(
            Node::Cast {
                e: Box::new(inner),
                try_,
            },
            to,
        ))
    }

    fn binary(
        &mut self,
        at: &ast::Expr,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
    ) -> Option<Typed> {
        use BinaryOperator as B;
        let l = self.check(left);
        let r = self.check(right);
        let (l, r) = (l?, r?);
        match op {
            B::And | B::Or => {
                let name = if *op == B::And { "AND" } else { "OR" };
                let l = self.expect_bool(left, l, name);
                let r = self.expect_bool(right, r, name);
                let (l, r) = (Box::new(l?), Box::new(r?));
                Some(typed(
                    if *op == B::And {
                        Node::And(l, r)
                    } else {
                        Node::Or(l, r)
                    },
                    Type::Bool,
                ))
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                let cmp = match op {
                    B::Eq => CmpOp::Eq,
                    B::NotEq => CmpOp::NotEq,
                    B::Lt => CmpOp::Lt,
                    B::LtEq => CmpOp::LtEq,
                    B::Gt => CmpOp::Gt,
                    _ => CmpOp::GtEq,
                };
                let (l, r) = self.unify(at, l, r, &op.to_string())?;
                Some(typed(Node::Cmp(cmp, Box::new(l), Box::new(r)), Type::Bool))
            }
            B::StringConcat => {
                let l = self.to_text(left, l, "||")?;
                let r = self.to_text(right, r, "||")?;
                Some(typed(
                    Node::Concat {
                        parts: vec![l, r],
                        null_as_empty: false,
                    },
                    Type::Str,
                ))
            }
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                let arith = match op {
                    B::Plus => ArithOp::Add,
                    B::Minus => ArithOp::Sub,
                    B::Multiply => ArithOp::Mul,
                    B::Divide => ArithOp::Div,
                    _ => ArithOp::Rem,
                };
                // timestamp ± interval, interval + timestamp
                match (l.ty, r.ty, arith) {
                    (Type::Ts, Type::Interval, ArithOp::Add | ArithOp::Sub) => {
                        return Some(typed(
                            Node::Arith(arith, Box::new(l), Box::new(r)),
                            Type::Ts,
                        ));
                    }
                    (Type::Interval, Type::Ts, ArithOp::Add) => {
                        return Some(typed(
                            Node::Arith(arith, Box::new(r), Box::new(l)),
                            Type::Ts,
                        ));
                    }
                    (Type::Ts, Type::Ts, ArithOp::Sub) => {
                        return self.err(
                            at,
                            "subtracting timestamps is not supported: use epoch_ms(a) - epoch_ms(b) (milliseconds)",
                        );
                    }
                    (Type::Ts, _, _) | (_, Type::Ts, _) => {
                        return self.err(
                            at,
                            format!(
                                "`{op}` on a timestamp needs an interval (e.g. `window_start + INTERVAL '5 minutes'`)"
                            ),
                        );
                    }
                    _ => {}
                }
                for (side, t) in [(left, &l), (right, &r)] {
                    if !(t.ty.is_numeric() || t.ty == Type::Null) {
                        let hint = if t.ty == Type::Str && arith == ArithOp::Add {
                            " (join strings with `||` or concat())"
                        } else {
                            ""
                        };
                        return self.err(
                            side,
                            format!("`{op}` needs numbers, `{side}` is {}{hint}", article(t.ty)),
                        );
                    }
                }
                // `/` is always double division (as in DuckDB): 7 / 2 = 3.5.
                let ty = match (arith, common(l.ty, r.ty)) {
                    (ArithOp::Div, _) => Type::Float,
                    (_, Some(Type::Null)) | (_, None) => Type::Int,
                    (_, Some(t)) => t,
                };
                Some(typed(
                    Node::Arith(arith, Box::new(coerce(l, ty)), Box::new(coerce(r, ty))),
                    ty,
                ))
            }
            other => self.err(at, format!("the operator `{other}` is not supported")),
        }
    }

    /// Both sides converted to one type for a comparison (a string literal against a timestamp
    /// is read as a timestamp).
    fn unify(
        &mut self,
        at: &impl Spanned,
        l: Typed,
        r: Typed,
        what: &str,
    ) -> Option<(Typed, Typed)> {
        let as_ts = |t: &Typed| match &t.node {
            Node::Lit(Lit::Str(s)) => {
                parse_timestamp(s).map(|ms| typed(Node::Lit(Lit::Ts(ms)), Type::Ts))
            }
            _ => None,
        };
        let (l, r) = match (l.ty, r.ty) {
            (Type::Ts, Type::Str) => match as_ts(&r) {
                Some(r) => (l, r),
                None => {
                    self.err(
                        at,
                        format!(
                            "cannot compare a timestamp with {} (`{}` is not a timestamp)",
                            article(r.ty),
                            lit_text(&r)
                        ),
                    );
                    return None;
                }
            },
            (Type::Str, Type::Ts) => match as_ts(&l) {
                Some(l) => (l, r),
                None => {
                    self.err(
                        at,
                        format!(
                            "cannot compare a timestamp with {} (`{}` is not a timestamp)",
                            article(l.ty),
                            lit_text(&l)
                        ),
                    );
                    return None;
                }
            },
            _ => (l, r),
        };
        if matches!(l.ty, Type::StrList | Type::Interval)
            || matches!(r.ty, Type::StrList | Type::Interval)
        {
            self.err(
                at,
                format!(
                    "`{what}` cannot compare {} and {}",
                    l.ty.name(),
                    r.ty.name()
                ),
            );
            return None;
        }
        match common(l.ty, r.ty) {
            Some(t) => Some((coerce(l, t), coerce(r, t))),
            None => {
                self.err(
                    at,
                    format!(
                        "`{what}` cannot compare {} with {}",
                        article(l.ty),
                        article(r.ty)
                    ),
                );
                None
            }
        }
    }

    fn expect(&mut self, at: &ast::Expr, t: Typed, want: Type, what: &str) -> Option<Typed> {
        if t.ty == want || t.ty == Type::Null {
            return Some(coerce(t, want));
        }
        if want == Type::Float && t.ty == Type::Int {
            return Some(coerce(t, want));
        }
        self.err(
            at,
            format!(
                "{what} needs {}, `{at}` is {}",
                article(want),
                article(t.ty)
            ),
        )
    }

    fn expect_bool(&mut self, at: &ast::Expr, t: Typed, what: &str) -> Option<Typed> {
        self.expect(at, t, Type::Bool, what)
    }

    /// Any scalar as text (for `||` and concat()).
    fn to_text(&mut self, at: &ast::Expr, t: Typed, what: &str) -> Option<Typed> {
        match t.ty {
            Type::Str => Some(t),
            Type::Null => Some(coerce(t, Type::Str)),
            Type::Int | Type::Float | Type::Bool | Type::Ts => Some(typed(
                Node::Cast {
                    e: Box::new(t),
                    try_: false,
                },
                Type::Str,
            )),
            other => self.err(at, format!("{what} cannot join {}", article(other))),
        }
    }

    fn function(&mut self, at: &ast::Expr, f: &ast::Function) -> Option<Typed> {
        let name = f.name.to_string().to_ascii_lowercase();
        if NONDETERMINISTIC.contains(&name.as_str()) {
            return self.err(
                at,
                format!(
                    "`{name}()` is not allowed: expressions must give the same result on every run and worker (use the event-time column instead)"
                ),
            );
        }
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return self.err(
                at,
                format!("`{name}`: OVER, FILTER and WITHIN GROUP are not supported"),
            );
        }
        let args: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::Subquery(_) => {
                return self.err(at, "subqueries are not supported in expressions");
            }
            FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return self.err(
                        at,
                        format!("`{name}`: DISTINCT and clauses are not supported"),
                    );
                }
                let mut out = Vec::new();
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => out.push(e),
                        _ => return self.err(at, format!("`{name}` takes plain arguments")),
                    }
                }
                out
            }
        };
        let arity = |checker: &mut Self, n: std::ops::RangeInclusive<usize>| -> bool {
            if n.contains(&args.len()) {
                return true;
            }
            let want = if n.start() == n.end() {
                format!("{}", n.start())
            } else if *n.end() == usize::MAX {
                format!("at least {}", n.start())
            } else {
                format!("{} to {}", n.start(), n.end())
            };
            checker.err(
                at,
                format!("`{name}` takes {want} argument(s), got {}", args.len()),
            );
            false
        };
        macro_rules! checked_args {
            () => {{
                let mut v = Vec::new();
                let mut ok = true;
                for a in &args {
                    match self.check(a) {
                        Some(t) => v.push((*a, t)),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                v
            }};
        }
        match name.as_str() {
            "abs" | "floor" | "ceil" | "ceiling" | "sqrt" | "ln" | "exp" => {
                if !arity(self, 1..=1) {
                    return None;
                }
                let func = match name.as_str() {
                    "abs" => Func::Abs,
                    "floor" => Func::Floor,
                    "ceil" | "ceiling" => Func::Ceil,
                    "sqrt" => Func::Sqrt,
                    "ln" => Func::Ln,
                    _ => Func::Exp,
                };
                let a = checked_args!();
                self.call_numeric(at, func, a)
            }
            "round" => {
                if !arity(self, 1..=2) {
                    return None;
                }
                let mut a = checked_args!();
                let digits = if a.len() == 2 {
                    let (d_at, d) = a.pop().expect("two arguments");
                    match d.node {
                        Node::Lit(Lit::Int(n)) if (-20..=20).contains(&n) => n as i32,
                        _ => return self.err(
                            d_at,
                            "round's second argument must be an integer literal between -20 and 20",
                        ),
                    }
                } else {
                    0
                };
                self.call_numeric(at, Func::Round(digits), a)
            }
            "power" | "pow" => {
                if !arity(self, 2..=2) {
                    return None;
                }
                let a = checked_args!();
                let mut out = Vec::new();
                for (e, t) in a {
                    out.push(self.expect(e, t, Type::Float, "power")?);
                }
                Some(typed(Node::Call(Func::Power, out), Type::Float))
            }
            "least" | "greatest" => {
                if !arity(self, 1..=usize::MAX) {
                    return None;
                }
                let a = checked_args!();
                let ty = self.one_type(&name, &a)?;
                let func = if name == "least" {
                    Func::Least
                } else {
                    Func::Greatest
                };
                Some(typed(
                    Node::Call(func, a.into_iter().map(|(_, t)| coerce(t, ty)).collect()),
                    ty,
                ))
            }
            "starts_with" | "ends_with" | "contains" => {
                if !arity(self, 2..=2) {
                    return None;
                }
                let a = checked_args!();
                let mut out = Vec::new();
                for (e, t) in a {
                    out.push(self.expect(e, t, Type::Str, &name)?);
                }
                let func = match name.as_str() {
                    "starts_with" => Func::StartsWith,
                    "ends_with" => Func::EndsWith,
                    _ => Func::Contains,
                };
                Some(typed(Node::Call(func, out), Type::Bool))
            }
            "split_part" => {
                if !arity(self, 3..=3) {
                    return None;
                }
                let a = checked_args!();
                let mut out = Vec::new();
                for (i, (e, t)) in a.into_iter().enumerate() {
                    let want = if i == 2 { Type::Int } else { Type::Str };
                    out.push(self.expect(e, t, want, "split_part")?);
                }
                Some(typed(Node::Call(Func::SplitPart, out), Type::Str))
            }
            "upper" | "lower" | "length" => {
                if !arity(self, 1..=1) {
                    return None;
                }
                let a = checked_args!();
                let (e, t) = a.into_iter().next().expect("one argument");
                let t = self.expect(e, t, Type::Str, &name)?;
                let (func, ty) = match name.as_str() {
                    "upper" => (Func::Upper, Type::Str),
                    "lower" => (Func::Lower, Type::Str),
                    _ => (Func::Length, Type::Int),
                };
                Some(typed(Node::Call(func, vec![t]), ty))
            }
            "concat" => {
                if !arity(self, 1..=usize::MAX) {
                    return None;
                }
                let a = checked_args!();
                let mut parts = Vec::new();
                for (e, t) in a {
                    parts.push(self.to_text(e, t, "concat")?);
                }
                Some(typed(
                    Node::Concat {
                        parts,
                        null_as_empty: true,
                    },
                    Type::Str,
                ))
            }
            "coalesce" => {
                if !arity(self, 1..=usize::MAX) {
                    return None;
                }
                let a = checked_args!();
                let ty = self.one_type(&name, &a)?;
                Some(typed(
                    Node::Coalesce(a.into_iter().map(|(_, t)| coerce(t, ty)).collect()),
                    ty,
                ))
            }
            "nullif" => {
                if !arity(self, 2..=2) {
                    return None;
                }
                let mut a = checked_args!();
                let (_, b) = a.pop().expect("two arguments");
                let (_, x) = a.pop().expect("two arguments");
                let (x, b) = self.unify(at, x, b, "nullif")?;
                let out_ty = x.ty;
                Some(typed(Node::Nullif(Box::new(x), Box::new(b)), out_ty))
            }
            "date_trunc" | "date_part" => {
                if !arity(self, 2..=2) {
                    return None;
                }
                let unit = match args[0] {
                    ast::Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) => s.to_ascii_lowercase(),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                let ts = self.check(args[1])?;
                let ts = self.expect(args[1], ts, Type::Ts, &name)?;
                if name == "date_trunc" {
                    match TruncUnit::parse(&unit) {
                        Some(u) => Some(typed(Node::Call(Func::DateTrunc(u), vec![ts]), Type::Ts)),
                        None => self.err(
                            args[0],
                            format!(
                                "date_trunc's first argument is a quoted unit: {}",
                                TruncUnit::NAMES.join(", ")
                            ),
                        ),
                    }
                } else {
                    match DatePart::parse(&unit) {
                        Some(p) => Some(typed(
                            Node::Call(Func::Extract(p), vec![ts]),
                            p.result_type(),
                        )),
                        None => self.err(
                            args[0],
                            format!(
                                "date_part's first argument is a quoted part: {}",
                                DatePart::NAMES.join(", ")
                            ),
                        ),
                    }
                }
            }
            "epoch_ms" => {
                if !arity(self, 1..=1) {
                    return None;
                }
                let a = checked_args!();
                let (e, t) = a.into_iter().next().expect("one argument");
                match t.ty {
                    Type::Ts => Some(typed(Node::Call(Func::EpochMs, vec![t]), Type::Int)),
                    Type::Int | Type::Null => Some(typed(
                        Node::Call(Func::FromEpochMs, vec![coerce(t, Type::Int)]),
                        Type::Ts,
                    )),
                    other => self.err(
                        e,
                        format!(
                            "epoch_ms takes a timestamp or a bigint of milliseconds, not {}",
                            article(other)
                        ),
                    ),
                }
            }
            _ => self.err(
                at,
                format!(
                    "unknown function `{name}`{}",
                    suggest(&name, FUNCTIONS.iter().copied())
                ),
            ),
        }
    }

    /// The type all of `args` convert to (numbers widen, NULL takes the others' type).
    fn one_type(&mut self, name: &str, args: &[(&ast::Expr, Typed)]) -> Option<Type> {
        let mut ty = Type::Null;
        for (e, t) in args {
            match common(ty, t.ty) {
                Some(c) if !matches!(c, Type::StrList | Type::Interval) => ty = c,
                _ => {
                    return self
                        .err(
                            *e,
                            format!(
                                "`{name}` needs arguments of one type: {} and {} do not mix",
                                ty.name(),
                                t.ty.name()
                            ),
                        )
                        .map(|t| t.ty);
                }
            }
        }
        Some(ty)
    }

    /// A one-argument numeric function: bigint in, bigint out for abs/round/floor/ceil; double
    /// otherwise.
    fn call_numeric(
        &mut self,
        at: &ast::Expr,
        func: Func,
        mut args: Vec<(&ast::Expr, Typed)>,
    ) -> Option<Typed> {
        let (e, t) = args.remove(0);
        if !(t.ty.is_numeric() || t.ty == Type::Null) {
            return self.err(
                e,
                format!(
                    "`{}` needs a number, `{e}` is {}",
                    func.name(),
                    article(t.ty)
                ),
            );
        }
        let _ = at;
        let keeps_int = matches!(func, Func::Abs | Func::Round(_) | Func::Floor | Func::Ceil);
        let ty = if keeps_int && t.ty == Type::Int {
            Type::Int
        } else {
            Type::Float
        };
        Some(typed(Node::Call(func, vec![coerce(t, ty)]), ty))
    }
}

/// `t` converted to `to` (only NULL → anything and bigint → double are implicit).
pub fn coerce(t: Typed, to: Type) -> Typed {
    if t.ty == to {
        return t;
    }
    if t.ty == Type::Null {
        return typed(Node::Lit(Lit::Null), to);
    }
    debug_assert!(
        t.ty == Type::Int && to == Type::Float,
        "implicit {:?} → {to:?}",
        t.ty
    );
    if let Node::Lit(Lit::Int(i)) = t.node {
        return typed(Node::Lit(Lit::Float(i as f64)), Type::Float);
    }
    typed(
        Node::Cast {
            e: Box::new(t),
            try_: false,
        },
        to,
    )
}

fn article(t: Type) -> String {
    match t {
        Type::Int | Type::Interval => format!("an {}", t.name()),
        Type::Null => "NULL".into(),
        _ => format!("a {}", t.name()),
    }
}

fn lit_text(t: &Typed) -> String {
    match &t.node {
        Node::Lit(Lit::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

fn date_part(field: &DateTimeField) -> Option<DatePart> {
    use DateTimeField as F;
    Some(match field {
        F::Year | F::Years => DatePart::Year,
        F::Quarter => DatePart::Quarter,
        F::Month | F::Months => DatePart::Month,
        F::Week(_) | F::Weeks | F::IsoWeek => DatePart::Week,
        F::Day | F::Days => DatePart::Day,
        F::DayOfWeek | F::Dow => DatePart::Dow,
        F::Isodow => DatePart::IsoDow,
        F::DayOfYear | F::Doy => DatePart::Doy,
        F::Hour | F::Hours => DatePart::Hour,
        F::Minute | F::Minutes => DatePart::Minute,
        F::Second | F::Seconds => DatePart::Second,
        F::Millisecond | F::Milliseconds => DatePart::Millisecond,
        F::Epoch => DatePart::Epoch,
        F::Custom(ident) => DatePart::parse(&ident.value.to_ascii_lowercase())?,
        _ => return None,
    })
}

/// An interval literal in milliseconds: `INTERVAL 5 MINUTE`, `INTERVAL '5 minutes'`,
/// `INTERVAL '1' HOUR`, `INTERVAL '1 hour 30 minutes'`.
fn interval_ms(iv: &ast::Interval) -> Result<i64, String> {
    if iv.last_field.is_some() {
        return Err("interval ranges (`... TO ...`) are not supported; write e.g. INTERVAL '1 hour 30 minutes'".into());
    }
    let text = match iv.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            other => {
                return Err(format!(
                    "an interval needs a number or a quoted string, found {other}"
                ));
            }
        },
        other => return Err(format!("an interval needs a literal, found `{other}`")),
    };
    let mut words: Vec<String> = text
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    if let Some(f) = &iv.leading_field {
        words.push(f.to_string().to_ascii_lowercase());
    }
    if words.len() % 2 != 0 || words.is_empty() {
        return Err(format!(
            "`{text}` is not an interval (e.g. INTERVAL '5 minutes')"
        ));
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let n: f64 = pair[0]
            .parse()
            .map_err(|_| format!("`{}` is not a number in interval `{text}`", pair[0]))?;
        let word = pair[1].as_str();
        let unit = match word {
            "ms" | "msec" | "msecs" => "millisecond",
            "s" | "sec" | "secs" => "second",
            "m" | "min" | "mins" => "minute",
            "h" | "hr" | "hrs" => "hour",
            "d" => "day",
            "w" => "week",
            w => w.strip_suffix('s').unwrap_or(w),
        };
        let ms: f64 = match unit {
            "millisecond" => 1.0,
            "second" => 1000.0,
            "minute" => 60_000.0,
            "hour" => 3_600_000.0,
            "day" => 86_400_000.0,
            "week" => 7.0 * 86_400_000.0,
            "month" | "year" | "mon" | "quarter" | "decade" | "century" => {
                return Err(format!(
                    "interval unit `{}` has no fixed length; use days or smaller units",
                    pair[1]
                ));
            }
            _ => return Err(format!("unknown interval unit `{}`", pair[1])),
        };
        let part = n * ms;
        if !part.is_finite() || part.abs() > 9.0e15 {
            return Err(format!("interval `{text}` is too large"));
        }
        total = total.saturating_add(part.round() as i64);
    }
    Ok(total)
}

/// Reads `2026-12-01`, `2026-12-01 14:30:00[.123]`, `2026-12-01T14:30:00Z` or with an offset
/// (`+01:00`) as ms since the epoch; a time without an offset is UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() == 10 {
        let nanos = arrow_cast::parse::string_to_timestamp_nanos(&format!("{s}T00:00:00Z")).ok()?;
        return Some(nanos.div_euclid(1_000_000));
    }
    let nanos = arrow_cast::parse::string_to_timestamp_nanos(s).ok()?;
    Some(nanos.div_euclid(1_000_000))
}
