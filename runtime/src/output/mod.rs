//! Exactly-once file output, below the kinds that use it: rolling, partitioned files published
//! by the checkpoint protocol ([`rolling`]), Parquet encoding ([`encode`]) and the dead letters
//! every source and step hands its rejects to ([`dead_letter`]).

pub mod dead_letter;
pub mod encode;
pub mod rolling;
