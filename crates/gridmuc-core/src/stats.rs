//! placeholder
/// placeholder
pub struct IntervalStats;
