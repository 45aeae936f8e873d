//! The one list of kinds, as a macro: each of sources, steps and sinks writes its list once
//! (`type:` name, folder, variant, config type) and gets the spec's enum (its serde and JSON
//! Schema), the names for "valid choices", the dispatch to its contract and the per-kind field
//! check of `validate`.

/// `kinds! { /// doc  enum SourceSpec: dyn SourceConfig; /// doc  "replay" in replay => Replay(replay::Config), ... }`
///
/// `in MODULE` declares the kind's folder as a module (kinds that live elsewhere leave it out).
macro_rules! kinds {
    ($(#[$edoc:meta])* enum $enum:ident: dyn $contract:path;
     $($(#[$doc:meta])* $name:literal $(in $module:ident)? => $variant:ident($config:ty),)*) => {
        $($(pub mod $module;)?)*

        $(#[$edoc])*
        #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "type")]
        pub enum $enum {
            $($(#[$doc])* #[serde(rename = $name)] $variant($config),)*
        }

        impl $enum {
            /// Every kind's `type:` name, in registry order.
            pub const TYPES: &'static [&'static str] = &[$($name),*];

            /// The kind's config behind the contract.
            pub fn kind(&self) -> &dyn $contract {
                match self {
                    $($enum::$variant(c) => c,)*
                }
            }

            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => $name,)*
                }
            }

            /// Checks the fields of a component of type `ty` (without its `type`), or `None` for
            /// an unknown type.
            pub fn check_fields(
                ty: &str,
                value: serde_json::Value,
            ) -> Option<Result<(), crate::base::kinds::PathError>> {
                match ty {
                    $($name => Some(crate::base::kinds::check_value::<$config>(value).map(drop)),)*
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use kinds;

/// Where a kind reports problems with its own fields: `error("topic", ...)` becomes
/// `sources.NAME.topic: ...`.
pub struct Checks<'a> {
    /// `sources.NAME`, `sinks.NAME`, ...
    pub path: String,
    pub err: &'a mut dyn FnMut(String, String),
}

impl Checks<'_> {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        (self.err)(field_path(&self.path, field), message.into());
    }
}

/// `path.field` (or `path` for the component itself, `field` empty).
pub fn field_path(path: &str, field: &str) -> String {
    if field.is_empty() {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// A field's path inside a component and serde's message.
pub type PathError = (Vec<String>, String);

/// Deserializes `value` as `T`, or says where (the path inside it) and why not.
pub(crate) fn check_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, PathError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        (path, e.into_inner().to_string())
    })
}
