//! Why a record was rejected (dead letters, metrics): one list for every source and step.

/// Why an input was rejected (a stable code, used in dead letters and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    MalformedFrame,
    MissingField,
    InvalidType,
    InvalidPrice,
    InvalidVolume,
    InvalidTimestamp,
    /// A symbol that is empty, longer than the protocol's `MAX_SYMBOL_BYTES` or has control characters.
    InvalidSymbol,
    /// A trade stamped too far ahead of the wall clock (`max_future`).
    FutureTimestamp,
    Late,
    /// A Kafka record that is not a trade object.
    MalformedRecord,
    /// A record a sink could not deliver (after its retries).
    DeliveryFailed,
    /// A row a model plugin could not score (trap, timeout, memory cap, error, bad output).
    PluginError,
    /// A record for which a step's expression failed (overflow, invalid cast, ln(0), ...).
    ExpressionError,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::MalformedFrame,
        RejectReason::MissingField,
        RejectReason::InvalidType,
        RejectReason::InvalidPrice,
        RejectReason::InvalidVolume,
        RejectReason::InvalidTimestamp,
        RejectReason::InvalidSymbol,
        RejectReason::FutureTimestamp,
        RejectReason::Late,
        RejectReason::MalformedRecord,
        RejectReason::DeliveryFailed,
        RejectReason::PluginError,
        RejectReason::ExpressionError,
    ];
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedFrame => "malformed_frame",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidType => "invalid_type",
            RejectReason::InvalidPrice => "invalid_price",
            RejectReason::InvalidVolume => "invalid_volume",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::InvalidSymbol => "invalid_symbol",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::Late => "late",
            RejectReason::MalformedRecord => "malformed_record",
            RejectReason::DeliveryFailed => "delivery_failed",
            RejectReason::PluginError => "plugin_error",
            RejectReason::ExpressionError => "expression_error",
        }
    }
}
