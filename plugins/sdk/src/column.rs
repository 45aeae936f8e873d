//! Columns, fields and batches: the data a model sees.

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 64-bit float; a missing value is NaN.
    Float64,
    /// 64-bit signed integer.
    Int64,
    /// UTF-8 text.
    Text,
    /// Milliseconds since the Unix epoch, UTC.
    TimestampMs,
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: ColumnType,
}

impl Field {
    pub fn new(name: &str, ty: ColumnType) -> Field {
        Field {
            name: name.to_string(),
            ty,
        }
    }
}

/// What a plugin says about itself: the host checks a step's inputs against `inputs` and adds
/// `outputs` to the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub version: String,
    /// The columns `process` expects, in this order. The first is the key (text).
    pub inputs: Vec<Field>,
    /// The columns `process` returns, in this order.
    pub outputs: Vec<Field>,
}

/// One column of values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Float64(Vec<f64>),
    Int64(Vec<i64>),
    Text(Vec<String>),
    TimestampMs(Vec<i64>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Float64(v) => v.len(),
            Column::Int64(v) | Column::TimestampMs(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ty(&self) -> ColumnType {
        match self {
            Column::Float64(_) => ColumnType::Float64,
            Column::Int64(_) => ColumnType::Int64,
            Column::Text(_) => ColumnType::Text,
            Column::TimestampMs(_) => ColumnType::TimestampMs,
        }
    }
}

/// A batch of rows in columns, in the order of the declared inputs. Rows are grouped by key
/// and, within a key, in event-time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
}

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.columns.first().map(Column::len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn column(&self, name: &str) -> Result<&Column, String> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("no input column `{name}`"))?;
        self.columns
            .get(i)
            .ok_or_else(|| format!("input column `{name}` is missing from the batch"))
    }

    /// A float column by its declared name.
    pub fn f64(&self, name: &str) -> Result<&[f64], String> {
        match self.column(name)? {
            Column::Float64(v) => Ok(v),
            other => Err(format!("input `{name}` is {:?}, not Float64", other.ty())),
        }
    }

    /// An integer or timestamp column by its declared name.
    pub fn i64(&self, name: &str) -> Result<&[i64], String> {
        match self.column(name)? {
            Column::Int64(v) | Column::TimestampMs(v) => Ok(v),
            other => Err(format!("input `{name}` is {:?}, not Int64", other.ty())),
        }
    }

    /// A text column by its declared name.
    pub fn text(&self, name: &str) -> Result<&[String], String> {
        match self.column(name)? {
            Column::Text(v) => Ok(v),
            other => Err(format!("input `{name}` is {:?}, not Text", other.ty())),
        }
    }
}
