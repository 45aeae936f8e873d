//! The YAML pipeline spec: the typed model ([`model`]: every kind's config, through the
//! registries of sources, steps and sinks), `${ENV}` interpolation ([`env`]), the YAML tree with
//! positions ([`tree`]) and loading ([`load`]). The words it reports in (diagnostics, units, the
//! registry macro) are in [`crate::base`], below the kinds.

pub mod env;
pub mod load;
pub mod model;
pub mod tree;

pub use crate::base::diagnostic::{Diagnostic, SpecErrors};
pub use load::{LoadedSpec, load_file, load_str};
pub use model::{PipelineSpec, json_schema};
