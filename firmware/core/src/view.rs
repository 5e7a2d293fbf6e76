//! How a job's files read to people: each frame sequence as one line with
//! its count and gaps, other files one by one. The API, the web admin and
//! the emails all show these lines.

use std::collections::HashMap;

use ferry_api::{JobLine, LineKind};
use ferry_domain::TaskStatus;
use ferry_proto::sequence::{Grouped, group, range_texts};
use ferry_store::Task;

/// A job's files, grouped into lines, highest priority first.
pub fn lines(tasks: &[Task]) -> Vec<JobLine> {
    let by_path: HashMap<&str, &Task> = tasks.iter().map(|t| (t.path.as_str(), t)).collect();
    let mut out = Vec::new();
    for g in group(tasks.iter().map(|t| t.path.as_str())) {
        match g {
            Grouped::Single(name) => {
                let Some(t) = by_path.get(name.as_str()) else {
                    continue;
                };
                out.push(JobLine {
                    kind: LineKind::File,
                    name,
                    files: 1,
                    missing: Vec::new(),
                    size: t.size,
                    bytes_done: t.bytes_done,
                    priority: t.priority,
                    status: t.status,
                    finished_at: t.finished_at,
                });
            }
            Grouped::Sequence(seq) => {
                let members: Vec<&Task> = seq
                    .frame_names()
                    .filter_map(|name| by_path.get(name.as_str()).copied())
                    .collect();
                // A sequence is as far as its least advanced frame.
                let status = members
                    .iter()
                    .map(|t| t.status)
                    .min_by_key(|s| s.rank())
                    .unwrap_or(TaskStatus::Queued);
                let finished_at = if status == TaskStatus::Done {
                    members.iter().filter_map(|t| t.finished_at).max()
                } else {
                    None
                };
                out.push(JobLine {
                    kind: LineKind::Sequence,
                    name: seq.notation(),
                    files: members.len() as u64,
                    missing: range_texts(&seq.missing()),
                    size: members.iter().map(|t| t.size).sum(),
                    bytes_done: members.iter().map(|t| t.bytes_done).sum(),
                    priority: members.iter().map(|t| t.priority).max().unwrap_or(500),
                    status,
                    finished_at,
                });
            }
        }
    }
    // Highest priority first, as they travel.
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_domain::{JobId, TaskId};

    fn task(path: &str, status: TaskStatus, priority: u16) -> Task {
        Task {
            id: TaskId(0),
            job_id: JobId(1),
            path: path.into(),
            size: 10,
            mtime_ns: 0,
            priority,
            status,
            bytes_done: if status == TaskStatus::Done { 10 } else { 0 },
            digest: None,
            finished_at: (status == TaskStatus::Done).then_some(5),
        }
    }

    #[test]
    fn a_sequence_is_one_line_with_its_gaps_and_its_least_advanced_status() {
        let tasks = vec![
            task("sh010.mov", TaskStatus::Done, 999),
            task("seq/f.1001.exr", TaskStatus::Done, 500),
            task("seq/f.1002.exr", TaskStatus::Queued, 500),
            task("seq/f.1004.exr", TaskStatus::Done, 500),
        ];
        let l = lines(&tasks);
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].kind, l[0].name.as_str()),
            (LineKind::File, "sh010.mov")
        );
        assert_eq!(l[1].kind, LineKind::Sequence);
        assert_eq!(l[1].name, "seq/f.####.exr[1001-1004]");
        assert_eq!(
            (l[1].files, l[1].missing.clone()),
            (3, vec!["1003".to_owned()])
        );
        assert_eq!((l[1].status, l[1].bytes_done), (TaskStatus::Queued, 20));
        assert_eq!(l[1].finished_at, None);
    }
}
