//! A burst of job updates through ferry-store, as the daemon makes them
//! (a job, its tasks, each task done, the job done), forever: the fault
//! tests kill it with SIGKILL at random moments and check the database.
//!
//!     ferry-store-burst DB
//!
//! Prints `ready` once the first job is committed.

// A helper for tests fails by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;

use ferry_store::{Database, JobKind, JobStatus, NewJob, NewTask, Role};

fn main() {
    let db = std::env::args()
        .nth(1)
        .expect("usage: ferry-store-burst DB");
    let store = Database::open(std::path::Path::new(&db)).expect("open the database");
    let owner = match store.user_by_email("burst@example.com").unwrap() {
        Some(u) => u,
        None => store
            .create_user("burst@example.com", "", Role::Employee, None)
            .unwrap(),
    };
    let mut announced = false;
    for n in 0u64.. {
        let job = store
            .create_job(&NewJob {
                kind: JobKind::Download,
                name: format!("burst {n}"),
                owner: owner.id,
                share: None,
                folder: String::new(),
                status: JobStatus::Running,
                client_address: None,
                delivery: None,
                recipient: None,
                resume_key: None,
            })
            .unwrap();
        let tasks: Vec<NewTask> = (0..20)
            .map(|i| NewTask {
                path: format!("shot010/shot010.{:04}.exr", 1001 + i),
                size: 1000 + i,
                mtime_ns: 0,
                priority: 500,
            })
            .collect();
        store.add_tasks(job, &tasks).unwrap();
        for t in &tasks {
            store.task_done(job, &t.path, Some("00")).unwrap();
        }
        store.set_job_status(job, JobStatus::Done, None).unwrap();
        if !announced {
            println!("ready");
            std::io::stdout().flush().unwrap();
            announced = true;
        }
    }
}
