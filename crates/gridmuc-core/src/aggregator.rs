//! placeholder
/// placeholder
pub struct Aggregator;
/// placeholder
pub struct AggregatorConfig;
/// placeholder
pub enum Ingest {}
