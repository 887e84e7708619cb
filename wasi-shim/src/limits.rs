//! The per-store resource limiter: one memory budget for all of a guest's
//! linear memories (a pod's `limits.memory`), caps on tables and instances,
//! and the peak memory it saw. A refused `memory.grow` traps, as a container
//! over its limit is killed, rather than letting the guest carry on.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use crate::usage::Meters;

/// Table elements one table may hold.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The error a refused `memory.grow` traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: growing to {wanted} bytes, limit {limit} bytes")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) wanted: usize,
    pub(crate) limit: usize,
}

/// One store's limiter. What it grants is added to the guest's shared
/// [`Meters`] and given back when the store (and so the limiter) is dropped.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: Option<usize>,
    max_instances: usize,
    total: usize,
    pub(crate) peak: usize,
    pub(crate) exceeded: bool,
    meters: Arc<Meters>,
}

impl Limiter {
    pub(crate) fn new(limit: Option<u64>, max_instances: usize, meters: Arc<Meters>) -> Self {
        Self {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            max_instances,
            total: 0,
            peak: 0,
            exceeded: false,
            meters,
        }
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.meters.shrink(self.total as u64);
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self.total.saturating_sub(current).saturating_add(desired);
        let cap = match (self.limit, maximum) {
            (Some(l), Some(m)) => Some(l.min(wanted - desired + m)),
            (Some(l), None) => Some(l),
            (None, Some(m)) => Some(wanted - desired + m),
            (None, None) => None,
        };
        if let Some(limit) = cap.filter(|&c| wanted > c) {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded { wanted, limit }));
        }
        self.meters.grow(wanted.saturating_sub(self.total) as u64);
        self.total = wanted;
        self.peak = self.peak.max(wanted);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances.saturating_mul(4)
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_by_memories() {
        let meters = Arc::new(Meters::default());
        let mut l = Limiter::new(Some(100), 4, meters.clone());
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 30, None).unwrap());
        assert!(l.memory_growing(60, 70, None).unwrap());
        let err = l.memory_growing(30, 31, None).unwrap_err();
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert!(l.exceeded);
        assert_eq!(l.peak, 100);
        assert_eq!(meters.snapshot().memory_bytes, 100);
        drop(l);
        let usage = meters.snapshot();
        assert_eq!((usage.memory_bytes, usage.peak_memory_bytes), (0, 100));
    }

    #[test]
    fn a_memory_maximum_also_caps() {
        let mut l = Limiter::new(None, 4, Arc::default());
        assert!(l.memory_growing(0, 10, Some(20)).is_ok());
        assert!(l.memory_growing(10, 21, Some(20)).is_err());
    }
}
