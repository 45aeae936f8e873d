//! tickflow's integration tests: one binary (heavy dependencies link once). Modules:

/// Cluster mode with real processes: splits of a worker count agree bit for bit and with the
/// oracle; a killed or frozen process ends the cluster; stray connections are refused.
mod cluster;
/// Grafana dashboards: every SQL query against real sink output (DuckDB), every PromQL query
/// against a real Prometheus scraping running pipelines.
mod dashboards;
/// The example pipelines of specs/examples/ against independent DuckDB computations.
mod examples;
/// SQL expressions: random expressions over random rows, tickflow against DuckDB.
mod expressions;
/// The Finnhub simulator's protocol, the client against every injected fault, the quickstart,
/// and archives that replay to the same bars.
mod finnhub;
/// Google Cloud Storage: the emulator against object_store's conformance suite, pipelines
/// writing to gs://, outages and refusals.
mod gcs;
/// Hostile input and careless specs: far-future trades, long and awkward symbols, truncated
/// files, overlapping folders, environment values, resource bounds.
mod hardening;
/// Kafka for real (the broker scripts/test starts): market bars against the oracle, ingest, delivery failures.
mod kafka;
/// Avro on Kafka with a real schema registry (Apicurio): Confluent's serializer writes what
/// tickflow reads, its deserializer reads what tickflow writes.
mod kafka_avro;
/// The exactly-once Kafka sink: transactions committed with checkpoints, read back by an
/// independent `read_committed` consumer through kill -9, a crash between manifest and commit,
/// worker-count changes and a broker restart.
mod kafka_exactly_once;
/// Kubernetes for real: the deploy/k8s manifests checked by a real API server, `kubectl scale`
/// and `kubectl delete pod` on a running pipeline, RBAC; the test plays the kubelet.
mod kubernetes;
/// Models trained in Python (scikit-learn → ONNX) scored by the stock onnx plugin, checked
/// against onnxruntime.
mod models;
/// A naive, independent implementation of validation, watermarks and windows: the oracle.
mod oracle;
/// WebAssembly model plugins: `plugin check`, the forecast spec, hostile plugins contained.
mod plugins;
/// The real binary end to end on `specs/replay.yaml`, Parquet read back.
mod replay;
/// Running behaviour: pacing, Ctrl-C, JSON logs, output formats and stores.
mod run;
/// `tickflow validate`: exact messages and exit codes for broken specs.
mod spec_errors;
/// Every spec in `specs/` validates; the committed JSON Schema has not drifted.
mod specs;
/// Replay bars checked by DuckDB, an independent SQL engine, reading our Parquet.
mod sql;
/// Shared helpers: temp folders, the test-side frame generator, running pipelines, reading Parquet.
mod support;
/// Window results against the oracle: seeded disorder, invalid and late trades, every window
/// kind, several worker counts.
mod windows;
