//! The order in which a sender puts chunks on the wire.
//!
//! Highest priority first; among equal priorities, files in plan order, and
//! within a file, chunks in ascending order (so files complete one after
//! another and a reader can start on the first ones). A chunk that has to be
//! sent again goes back to the front of its file.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::chunk::ChunkRef;
use crate::plan::{FileId, Priority};

type Key = (Reverse<Priority>, FileId);

/// Chunks waiting to be sent, by priority.
#[derive(Default, Debug)]
pub struct Scheduler {
    queues: BTreeMap<Key, VecDeque<u32>>,
    priorities: HashMap<FileId, Priority>,
    queued: usize,
}

impl Scheduler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `chunks` of `file` at `priority` (after any already queued).
    pub fn add(&mut self, file: FileId, priority: Priority, chunks: impl IntoIterator<Item = u32>) {
        let priority = *self.priorities.entry(file).or_insert(priority);
        let queue = self.queues.entry((Reverse(priority), file)).or_default();
        let before = queue.len();
        queue.extend(chunks);
        self.queued += queue.len() - before;
        if queue.is_empty() {
            self.queues.remove(&(Reverse(priority), file));
        }
    }

    /// Puts one chunk back at the front of its file's queue.
    pub fn requeue(&mut self, chunk: ChunkRef, default: Priority) {
        let priority = *self.priorities.entry(chunk.file).or_insert(default);
        self.queues
            .entry((Reverse(priority), chunk.file))
            .or_default()
            .push_front(chunk.index);
        self.queued += 1;
    }

    /// The chunk [`Scheduler::pop`] would return, left in place.
    pub fn peek(&self) -> Option<ChunkRef> {
        let ((_, file), queue) = self.queues.first_key_value()?;
        queue.front().map(|&index| ChunkRef { file: *file, index })
    }

    /// The next chunk to send.
    pub fn pop(&mut self) -> Option<ChunkRef> {
        let mut entry = self.queues.first_entry()?;
        let (_, file) = *entry.key();
        let index = entry.get_mut().pop_front()?;
        if entry.get().is_empty() {
            entry.remove();
        }
        self.queued -= 1;
        Some(ChunkRef { file, index })
    }

    /// Moves a file's remaining chunks to a new priority.
    pub fn set_priority(&mut self, file: FileId, priority: Priority) {
        let old = self.priorities.insert(file, priority);
        if let Some(old) = old
            && let Some(queue) = self.queues.remove(&(Reverse(old), file))
        {
            self.queues.insert((Reverse(priority), file), queue);
        }
    }

    /// Drops every queued chunk of a file.
    pub fn remove_file(&mut self, file: FileId) {
        if let Some(p) = self.priorities.get(&file)
            && let Some(queue) = self.queues.remove(&(Reverse(*p), file))
        {
            self.queued -= queue.len();
        }
    }

    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Scheduler) -> Vec<(u32, u32)> {
        std::iter::from_fn(|| s.pop())
            .map(|c| (c.file.0, c.index))
            .collect()
    }

    #[test]
    fn highest_priority_first_then_plan_order() {
        let mut s = Scheduler::new();
        s.add(FileId(0), Priority::DEFAULT, 0..2);
        s.add(FileId(1), Priority::HIGH, 0..2);
        s.add(FileId(2), Priority::DEFAULT, 0..1);
        s.add(FileId(3), Priority::LOW, 0..1);
        assert_eq!(s.len(), 6);
        assert_eq!(
            drain(&mut s),
            vec![(1, 0), (1, 1), (0, 0), (0, 1), (2, 0), (3, 0)]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn reprioritise_and_requeue() {
        let mut s = Scheduler::new();
        s.add(FileId(0), Priority::DEFAULT, 0..3);
        s.add(FileId(1), Priority::DEFAULT, 0..3);
        assert_eq!(s.pop().map(|c| c.index), Some(0));
        s.set_priority(FileId(1), Priority::HIGH);
        s.requeue(
            ChunkRef {
                file: FileId(0),
                index: 0,
            },
            Priority::DEFAULT,
        );
        assert_eq!(
            drain(&mut s),
            vec![(1, 0), (1, 1), (1, 2), (0, 0), (0, 1), (0, 2)]
        );
    }

    #[test]
    fn remove_file() {
        let mut s = Scheduler::new();
        s.add(FileId(0), Priority::DEFAULT, 0..3);
        s.add(FileId(1), Priority::LOW, 0..1);
        s.remove_file(FileId(0));
        assert_eq!(s.len(), 1);
        assert_eq!(drain(&mut s), vec![(1, 0)]);
    }
}
