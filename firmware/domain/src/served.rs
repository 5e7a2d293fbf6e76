//! When a file downloaded over HTTPS counts as received: once every byte
//! of it has been served to its recipient, over however many ranges,
//! requests and resumptions, through its own URL or inside the zip.
//!
//! [`Coverage`] keeps the bytes served so far as sorted, disjoint spans,
//! so a range served twice counts once and the order ranges come in does
//! not matter.

use std::ops::Range;

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
        } else {
            range
        };
        self.spans.splice(first..last, [merged]);
    }

    /// How many bytes have been served.
    pub fn served(&self) -> u64 {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }

    /// Whether every byte of a file of `size` bytes has been served. An
    /// empty file is received once it has been asked for at all, which its
    /// caller records by calling [`Coverage::add`] with `0..0` and then
    /// asking this (an empty file has no bytes to miss).
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
    fn an_empty_file_is_whole_at_once() {
        assert!(Coverage::default().is_whole(0));
        assert!(!Coverage::default().is_whole(1));
    }
}
