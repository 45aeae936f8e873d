//! Kafka words the source and the sink share.

/// Kafka topic names: 1–249 characters of letters, digits, `.`, `_` and `-`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && topic != "."
        && topic != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{topic}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`; at most 249)"
        ))
    }
}

/// The broker list must name at least one broker.
pub fn check_brokers(brokers: &str) -> Result<(), String> {
    if brokers.trim().is_empty() {
        Err("no Kafka brokers given (e.g. `127.0.0.1:9092`)".into())
    } else {
        Ok(())
    }
}
