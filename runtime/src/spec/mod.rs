//! The YAML pipeline spec: the typed model ([`model`]), `${ENV}` interpolation ([`env`]), units
//! ([`units`]), loading with positions ([`load`]) and diagnostics ([`diagnostic`]).

pub mod diagnostic;
pub mod env;
pub mod kinds;
pub mod load;
pub mod model;
pub mod tree;
pub mod units;

pub use diagnostic::{Diagnostic, SpecErrors};
pub use load::{LoadedSpec, load_file, load_str};
pub use model::{PipelineSpec, json_schema};
