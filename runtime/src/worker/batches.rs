//! Exchanges in larger vectors: [`Batches`] fills vectors of `N` records where timely's own
//! builder fills 8 KiB (93 trades). Every vector an exchange sends is a message with its own
//! bookkeeping (the channel, progress counts, a stash lookup at the receiver); a trade stream
//! sends ten times fewer of them this way.

use std::collections::VecDeque;

use timely::container::{ContainerBuilder, LengthPreservingContainerBuilder, PushInto};
use timely::dataflow::channels::pact::ExchangeCore;

/// Records per vector of a window's exchange (about 90 KiB of trades).
pub const RECORDS: usize = 1024;

/// An exchange by `route` that sends vectors of [`RECORDS`] records.
pub fn exchange<T: 'static, F>(route: F) -> ExchangeCore<Batches<T, RECORDS>, F>
where
    for<'a> F: FnMut(&T) -> u64 + 'static,
{
    ExchangeCore::<Batches<T, RECORDS>, F>::new_core(route)
}

/// Builds vectors of `N` records, in the order they are pushed (as timely's
/// `CapacityContainerBuilder` does, with another capacity). One empty vector is kept between a
/// push and the next extract, for reuse.
pub struct Batches<T, const N: usize> {
    current: Vec<T>,
    empty: Option<Vec<T>>,
    pending: VecDeque<Vec<T>>,
}

impl<T, const N: usize> Default for Batches<T, N> {
    fn default() -> Self {
        Batches {
            current: Vec::new(),
            empty: None,
            pending: VecDeque::new(),
        }
    }
}

impl<T, const N: usize> PushInto<T> for Batches<T, N> {
    #[inline]
    fn push_into(&mut self, item: T) {
        if self.current.capacity() == 0 {
            self.current = self.empty.take().unwrap_or_default();
            self.current.clear();
            self.current.reserve(N);
        }
        self.current.push(item);
        if self.current.len() >= N {
            self.pending.push_back(std::mem::take(&mut self.current));
        }
    }
}

impl<T: 'static, const N: usize> ContainerBuilder for Batches<T, N> {
    type Container = Vec<T>;

    #[inline]
    fn extract(&mut self) -> Option<&mut Vec<T>> {
        let container = self.pending.pop_front()?;
        self.empty = Some(container);
        self.empty.as_mut()
    }

    #[inline]
    fn finish(&mut self) -> Option<&mut Vec<T>> {
        if !self.current.is_empty() {
            self.pending.push_back(std::mem::take(&mut self.current));
        }
        self.empty = self.pending.pop_front();
        self.empty.as_mut()
    }
}

impl<T: 'static, const N: usize> LengthPreservingContainerBuilder for Batches<T, N> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_in_order_in_vectors_of_n() {
        let mut b = Batches::<u32, 4>::default();
        let mut out = Vec::new();
        for i in 0..10 {
            b.push_into(i);
            while let Some(v) = b.extract() {
                assert_eq!(v.len(), 4);
                out.append(v);
            }
        }
        while let Some(v) = b.finish() {
            out.append(v);
        }
        assert_eq!(out, (0..10).collect::<Vec<_>>());
    }
}
