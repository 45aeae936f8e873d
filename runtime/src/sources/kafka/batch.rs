//! A partition's records taken many at a time (librdkafka's `rd_kafka_consume_batch_queue`, as
//! confluent-kafka's `Consumer.consume(n)` does), instead of one `poll` per record.
//!
//! NB: rdkafka's `PartitionQueue::poll` serves one record per call, and each call reads the
//! clock four times (three in librdkafka, one in rdkafka) and takes the queue's lock: 12% of a
//! Kafka backfill's CPU. A batch pays that once per call.

use std::ffi::CString;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::BaseConsumer;

/// A handle on one partition's queue (split from the consumer's with `split_partition_queue`,
/// which must stay alive beside it so that records keep arriving on this queue).
pub struct BatchQueue {
    queue: *mut rd::rd_kafka_queue_t,
    /// Keeps the client alive for as long as the queue and its records are used.
    _consumer: Arc<BaseConsumer>,
    slots: Vec<*mut rd::rd_kafka_message_t>,
}

impl BatchQueue {
    /// The queue of `topic`'s `partition` on `consumer` (`None` if librdkafka has no such
    /// partition).
    pub fn of(consumer: &Arc<BaseConsumer>, topic: &str, partition: i32) -> Option<BatchQueue> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives; the returned handle is
        // owned here and released in `drop`.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                rdkafka::consumer::Consumer::client(consumer.as_ref()).native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        (!queue.is_null()).then(|| BatchQueue {
            queue,
            _consumer: Arc::clone(consumer),
            slots: Vec::new(),
        })
    }

    /// Up to `max` records queued right now (no waiting), in offset order.
    pub fn take(&mut self, max: usize) -> Vec<Record> {
        self.slots.clear();
        self.slots.reserve(max);
        // SAFETY: `slots` has room for `max` pointers; librdkafka writes `n ≤ max` of them, each
        // a message this call now owns.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue, 0, self.slots.as_mut_ptr(), max)
        };
        if n <= 0 {
            return Vec::new();
        }
        // SAFETY: the first `n` slots were written.
        unsafe { self.slots.set_len(n as usize) };
        self.slots.drain(..).map(Record).collect()
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        // SAFETY: `queue` came from `rd_kafka_queue_get_partition` and is released once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) }
    }
}

/// One record (or a consumer error) taken from a [`BatchQueue`], released when dropped.
pub struct Record(*mut rd::rd_kafka_message_t);

impl Record {
    fn msg(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: librdkafka returned a valid message, alive until `drop`.
        unsafe { &*self.0 }
    }

    /// The consumer error this record stands for, if any.
    pub fn error(&self) -> Option<rdkafka::error::KafkaError> {
        let err = self.msg().err;
        (err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
            rdkafka::error::KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::from(
                err,
            ))
        })
    }

    pub fn offset(&self) -> i64 {
        self.msg().offset
    }

    /// The record's value (empty when it has none).
    pub fn payload(&self) -> &[u8] {
        let m = self.msg();
        if m.payload.is_null() || m.len == 0 {
            return &[];
        }
        // SAFETY: `payload` points at `len` bytes owned by the message.
        unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) }
    }

    /// The record's timestamp in ms since the Unix epoch, if it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        // SAFETY: a valid message; a null type pointer is allowed.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.0, std::ptr::null_mut()) };
        (t >= 0).then_some(t)
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // SAFETY: each message is destroyed once, here.
        unsafe { rd::rd_kafka_message_destroy(self.0) }
    }
}
