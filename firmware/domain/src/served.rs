//! When a file downloaded over HTTPS counts as received: once every byte
//! of it has been served to its recipient, over however many ranges,
//! requests and resumptions, through its own URL or inside the zip.
//!
//! [`Coverage`] keeps the bytes served so far as sorted, disjoint spans,
//! so a range served twice counts once and the order ranges come in does
//! not matter.

use std::ops::Range;

/// Disjoint spans kept per file at most. A download manager asks for a
/// handful of ranges; a client that scatters thousands of tiny ones stops
/// being counted beyond this (what it was served still reaches it) rather
/// than growing the appliance's memory.
pub const MAX_SPANS: usize = 1024;

/// The bytes of one file served so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Sorted, disjoint, non-adjacent half-open spans.
    spans: Vec<Range<u64>>,
}

impl Coverage {
    /// Counts `range` as served.
    pub fn add(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        // Every span that touches or overlaps the new one merges into it.
        let first = self.spans.partition_point(|s| s.end < range.start);
        let last = self.spans.partition_point(|s| s.start <= range.end);
        let merged = if first < last {
            self.spans[first].start.min(range.start)..self.spans[last - 1].end.max(range.end)
        } else if self.spans.len() >= MAX_SPANS {
            return;
        } else {
            range
        };
        self.spans.splice(first..last, [merged]);
    }

    /// A file whose first `bytes` were served before (the part a restarted
    /// appliance kept).
    pub fn from_prefix(bytes: u64) -> Self {
        let mut c = Coverage::default();
        c.add(0..bytes);
        c
    }

    /// How many bytes from the start have been served without a gap: what
    /// is kept across a restart.
    pub fn prefix(&self) -> u64 {
        self.spans
            .first()
            .filter(|s| s.start == 0)
            .map_or(0, |s| s.end)
    }

    /// How many bytes have been served.
    pub fn served(&self) -> u64 {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }

    /// Whether every byte of a file of `size` bytes has been served (an
    /// empty file has no bytes to miss: it is whole once asked for).
    pub fn is_whole(&self, size: u64) -> bool {
        size == 0
            || self
                .spans
                .first()
                .is_some_and(|s| s.start == 0 && s.end >= size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_in_any_order_and_overlapping_count_once() {
        let mut c = Coverage::default();
        c.add(50..100);
        c.add(0..10);
        assert_eq!(c.served(), 60);
        assert!(!c.is_whole(100));
        c.add(5..20);
        c.add(20..30); // adjacent: merges
        c.add(25..60);
        assert_eq!(c.spans, vec![0..100]);
        assert_eq!(c.served(), 100);
        assert!(c.is_whole(100));
        assert!(!c.is_whole(101));
        c.add(0..100);
        assert_eq!(c.served(), 100);
    }

    #[test]
    fn a_span_that_bridges_several_merges_them_all() {
        let mut c = Coverage::default();
        for r in [0..2, 4..6, 8..10, 12..14] {
            c.add(r);
        }
        c.add(1..13);
        assert_eq!(c.spans, vec![0..14]);
        c.add(20..20);
        assert_eq!(c.spans, vec![0..14]);
    }

    #[test]
    fn scattered_spans_are_bounded_and_the_prefix_survives() {
        let mut c = Coverage::from_prefix(100);
        assert_eq!(c.prefix(), 100);
        for i in 0..(MAX_SPANS as u64 * 2) {
            c.add(1000 + i * 10..1000 + i * 10 + 1);
        }
        assert_eq!(c.spans.len(), MAX_SPANS);
        // What touches a kept span still counts.
        c.add(50..200);
        assert_eq!(c.prefix(), 200);
        assert_eq!(Coverage::default().prefix(), 0);
        let mut gap = Coverage::default();
        gap.add(10..20);
        assert_eq!(gap.prefix(), 0);
    }

    #[test]
    fn an_empty_file_is_whole_at_once() {
        assert!(Coverage::default().is_whole(0));
        assert!(!Coverage::default().is_whole(1));
    }
}
