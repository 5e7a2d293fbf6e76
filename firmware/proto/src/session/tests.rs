//! A simulated pair of peers: a sender and a receiver joined by an
//! in-memory network that reorders chunk streams, corrupts some of them and
//! cuts the whole session at random moments. The receiver's "disk" keeps only
//! what it checkpointed, as a real one does after a crash.

use std::collections::HashMap;

use super::*;
use crate::frame::{LEN_PREFIX, decode_body, encode};

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A part file as the receiver's disk holds it.
#[derive(Default, Clone)]
struct Part {
    data: Vec<u8>,
    /// The last checkpointed resume state.
    saved: Option<(ChunkBitmap, Vec<Digest>)>,
}

#[derive(Default)]
struct Disk {
    parts: HashMap<SharePath, Part>,
    finals: HashMap<SharePath, Vec<u8>>,
}

struct Source {
    plan: Vec<PlanFile>,
    data: Vec<Vec<u8>>,
}

const CHUNK: u32 = 64 * 1024;

fn source(rng: &mut Rng, specs: &[(&str, usize, Priority)]) -> Source {
    let mut plan = Vec::new();
    let mut data = Vec::new();
    for (i, (path, size, priority)) in specs.iter().enumerate() {
        plan.push(PlanFile {
            id: FileId(i as u32),
            path: SharePath::parse(path).unwrap(),
            size: *size as u64,
            mtime_ns: 1_600_000_000_000_000_000,
            priority: *priority,
        });
        data.push((0..*size).map(|_| rng.next() as u8).collect());
    }
    Source { plan, data }
}

/// Every frame crosses the simulated wire encoded, as on QUIC.
fn wire(frame: Frame) -> Frame {
    let bytes = encode(&frame).unwrap();
    decode_body(&bytes[LEN_PREFIX..]).unwrap()
}

#[derive(Default, Debug)]
struct Outcome {
    finished: bool,
    skipped: u64,
    sent: u64,
    resends: u32,
    delivered: Vec<FileId>,
}

/// Runs one session until it finishes or the network cuts it.
fn run_session(
    rng: &mut Rng,
    src: &Source,
    disk: &mut Disk,
    cut_percent: u64,
    corrupt_percent: u64,
    max_in_flight: usize,
) -> Outcome {
    let layout = ChunkLayout::new(CHUNK).unwrap();
    let mut sender = Sender::new(layout, src.plan.clone()).unwrap();
    // The appliance's way: every receipt is checked.
    sender.verify_receipts();
    let mut receiver = Receiver::new();
    let mut in_flight: Vec<(ChunkRef, Vec<u8>, Digest)> = Vec::new();
    let mut out = Outcome::default();
    for _ in 0..1_000_000 {
        if rng.chance(cut_percent) {
            return out;
        }
        // Control frames, both ways.
        while let Some(f) = sender.poll_frame() {
            receiver.handle_frame(wire(f)).unwrap();
        }
        while let Some(f) = receiver.poll_frame() {
            if matches!(f, Frame::Resend { .. }) {
                out.resends += 1;
            }
            sender.handle_frame(wire(f)).unwrap();
        }
        // The receiver's IO: answer plans from disk, commit complete files.
        while let Some(ev) = receiver.poll_event() {
            match ev {
                ReceiverEvent::PlanStarted { .. } => {}
                ReceiverEvent::Planned { first, count } => {
                    for id in first.0..first.0 + count {
                        let plan = receiver.file(FileId(id)).unwrap().clone();
                        let local = if let Some(data) = disk.finals.get(&plan.path) {
                            LocalState::Complete(file_digest(data))
                        } else {
                            match disk.parts.get(&plan.path).and_then(|p| p.saved.clone()) {
                                Some((have, digests)) => LocalState::Partial { have, digests },
                                None => LocalState::Nothing,
                            }
                        };
                        receiver.set_local(FileId(id), local).unwrap();
                    }
                }
                ReceiverEvent::FileComplete { file, digest } => {
                    let plan = receiver.file(file).unwrap().clone();
                    let part = disk.parts.remove(&plan.path).unwrap_or_default();
                    assert_eq!(part.data.len() as u64, plan.size);
                    let chunks: Vec<Digest> = part
                        .data
                        .chunks(CHUNK as usize)
                        .map(Digest::of_chunk)
                        .collect();
                    assert_eq!(
                        Digest::of_file(&chunks),
                        digest,
                        "digest of what is on disk"
                    );
                    disk.finals.insert(plan.path, part.data);
                    receiver.committed(file);
                }
                ReceiverEvent::Finished => {}
            }
        }
        while let Some(ev) = sender.poll_event() {
            match ev {
                SenderEvent::Skipped { bytes, .. } => out.skipped += bytes,
                SenderEvent::Delivered { file, .. } => out.delivered.push(file),
                SenderEvent::HashHeld { file, chunks } => {
                    // The sender's IO: hash its own copy of those chunks.
                    let data = &src.data[file.0 as usize];
                    let digests = chunks
                        .iter()
                        .map(|i| {
                            let at = layout.offset(*i) as usize;
                            let len = layout.chunk_len(data.len() as u64, *i).unwrap() as usize;
                            (*i, Digest::of_chunk(&data[at..at + len]))
                        })
                        .collect();
                    sender.held_hashed(file, digests).unwrap();
                }
                SenderEvent::Finished => {}
            }
        }
        if sender.is_finished() && receiver.is_finished() {
            out.finished = true;
            return out;
        }
        // Open new chunk streams up to the window.
        while in_flight.len() < max_in_flight {
            let Some(chunk) = sender.next_chunk() else {
                break;
            };
            let f = &src.plan[chunk.file.0 as usize];
            let offset = layout.offset(chunk.index) as usize;
            let len = layout.chunk_len(f.size, chunk.index).unwrap() as usize;
            let bytes = src.data[chunk.file.0 as usize][offset..offset + len].to_vec();
            let digest = Digest::of_chunk(&bytes);
            in_flight.push((chunk, bytes, digest));
        }
        // Deliver one stream, in random order; some get corrupted.
        if !in_flight.is_empty() {
            let i = rng.below(in_flight.len() as u64) as usize;
            let (chunk, mut bytes, claimed) = in_flight.swap_remove(i);
            if rng.chance(corrupt_percent) {
                bytes[0] ^= 0xff;
            }
            let header = ChunkHeader {
                chunk,
                len: bytes.len() as u32,
            };
            let header = ChunkHeader::decode(&header.encode()).unwrap();
            match receiver.admit_chunk(&header).unwrap() {
                Admission::Write { offset } => {
                    let plan = receiver.file(chunk.file).unwrap().clone();
                    let part = disk.parts.entry(plan.path).or_default();
                    part.data.resize(plan.size as usize, 0);
                    part.data[offset as usize..offset as usize + bytes.len()]
                        .copy_from_slice(&bytes);
                    receiver.chunk_written(chunk, Digest::of_chunk(&bytes), claimed);
                }
                Admission::Discard => {}
            }
            out.sent += bytes.len() as u64;
            sender.chunk_sent(chunk, claimed).unwrap();
        }
        // Checkpoint some files' resume state, as the engine does every second.
        for id in 0..receiver.file_count() as u32 {
            if rng.chance(5) {
                let plan = receiver.file(FileId(id)).unwrap().clone();
                if let (Some(part), Some((have, digests))) = (
                    disk.parts.get_mut(&plan.path),
                    receiver.resume_state(FileId(id)),
                ) && have.count() > 0
                {
                    part.saved = Some((have.clone(), digests.to_vec()));
                }
            }
        }
    }
    panic!("session did not settle");
}

/// A file's digest: BLAKE3 over its chunks' digests.
fn file_digest(data: &[u8]) -> Digest {
    let chunks: Vec<Digest> = data.chunks(CHUNK as usize).map(Digest::of_chunk).collect();
    Digest::of_file(&chunks)
}

fn assert_delivered(src: &Source, disk: &Disk) {
    for (f, data) in src.plan.iter().zip(&src.data) {
        assert_eq!(disk.finals.get(&f.path), Some(data), "{}", f.path);
    }
    assert!(disk.parts.is_empty());
}

#[test]
fn clean_session_delivers_everything() {
    let mut rng = Rng(1);
    let src = source(
        &mut rng,
        &[
            ("a.mov", 300_000, Priority::DEFAULT),
            ("seq/f.1001.exr", 10, Priority::DEFAULT),
            ("empty", 0, Priority::DEFAULT),
            ("exact", CHUNK as usize * 2, Priority::DEFAULT),
        ],
    );
    let mut disk = Disk::default();
    let out = run_session(&mut rng, &src, &mut disk, 0, 0, 4);
    assert!(out.finished);
    assert_eq!(out.skipped, 0);
    assert_eq!(out.sent, 300_010 + CHUNK as u64 * 2);
    assert_delivered(&src, &disk);

    // A second session over a complete destination sends nothing.
    let out = run_session(&mut rng, &src, &mut disk, 0, 0, 4);
    assert!(out.finished);
    assert_eq!(out.sent, 0);
    assert_eq!(out.skipped, 300_010 + CHUNK as u64 * 2);
}

#[test]
fn resumes_after_random_cuts_and_repairs_corruption() {
    let mut resumed = 0;
    for seed in 1..20 {
        let mut rng = Rng(seed * 7919);
        let src = source(
            &mut rng,
            &[
                ("big.mov", 2_000_000, Priority::HIGH),
                ("frames/x.0001.exr", 70_000, Priority::DEFAULT),
                ("frames/x.0002.exr", 70_000, Priority::DEFAULT),
                ("frames/x.0003.exr", 1, Priority::LOW),
            ],
        );
        let mut disk = Disk::default();
        let mut sessions = 0;
        loop {
            sessions += 1;
            assert!(sessions < 500, "seed {seed}: no progress");
            let held = !disk.finals.is_empty() || disk.parts.values().any(|p| p.saved.is_some());
            let out = run_session(&mut rng, &src, &mut disk, 3, 3, 6);
            if out.finished {
                // The session that completes must not resend what was kept.
                assert!(
                    !held || out.skipped > 0,
                    "seed {seed}: resumed without skipping"
                );
                break;
            }
        }
        assert_delivered(&src, &disk);
        resumed += u32::from(sessions > 1);
    }
    assert!(resumed > 8, "the cuts exercised resume ({resumed} seeds)");
}

#[test]
fn corrupted_chunks_are_sent_again() {
    let mut rng = Rng(42);
    let src = source(&mut rng, &[("a.mov", 1_000_000, Priority::DEFAULT)]);
    let mut disk = Disk::default();
    let out = run_session(&mut rng, &src, &mut disk, 0, 30, 4);
    assert!(out.finished);
    assert!(out.resends > 0);
    assert!(out.sent > 1_000_000);
    assert_delivered(&src, &disk);
}

#[test]
fn highest_priority_files_are_delivered_first() {
    let mut rng = Rng(3);
    let src = source(
        &mut rng,
        &[
            ("shot010.mp4", 200_000, Priority::HIGH),
            ("shot020.mp4", 200_000, Priority::HIGH),
            ("shot010/f.1001.exr", 100_000, Priority::DEFAULT),
            ("shot010/f.1002.exr", 100_000, Priority::DEFAULT),
            ("notes.txt", 10, Priority::LOW),
        ],
    );
    let mut disk = Disk::default();
    let out = run_session(&mut rng, &src, &mut disk, 0, 0, 1);
    assert!(out.finished);
    let order: Vec<u32> = out.delivered.iter().map(|f| f.0).collect();
    assert_eq!(&order[..2], &[0, 1], "mp4s first: {order:?}");
    assert_eq!(order.last(), Some(&4));
}

fn planned_receiver(files: Vec<PlanFile>) -> Result<Receiver, ProtoError> {
    let mut r = Receiver::new();
    let bytes = files.iter().map(|f| f.size).sum();
    r.handle_frame(Frame::PlanStart {
        chunk_size: CHUNK,
        files: Some(files.len() as u64),
        bytes: Some(bytes),
    })?;
    r.handle_frame(Frame::PlanFiles { files })?;
    Ok(r)
}

fn pf(id: u32, path: &str, size: u64) -> PlanFile {
    PlanFile {
        id: FileId(id),
        path: SharePath::parse(path).unwrap(),
        size,
        mtime_ns: 0,
        priority: Priority::DEFAULT,
    }
}

#[test]
fn receiver_refuses_protocol_abuse() {
    // Chunk past the end, wrong length, unknown file, before have.
    let mut r = planned_receiver(vec![pf(0, "a", 100)]).unwrap();
    let h = |file, index, len| ChunkHeader {
        chunk: ChunkRef {
            file: FileId(file),
            index,
        },
        len,
    };
    assert!(r.admit_chunk(&h(0, 0, 100)).is_err(), "before have");
    r.set_local(FileId(0), LocalState::Nothing).unwrap();
    assert!(r.admit_chunk(&h(0, 1, 100)).is_err(), "past end");
    assert!(r.admit_chunk(&h(0, 0, 99)).is_err(), "wrong length");
    assert!(r.admit_chunk(&h(1, 0, 100)).is_err(), "unknown file");
    assert_eq!(
        r.admit_chunk(&h(0, 0, 100)).unwrap(),
        Admission::Write { offset: 0 }
    );
    assert_eq!(
        r.admit_chunk(&h(0, 0, 100)).unwrap(),
        Admission::Discard,
        "same chunk twice at once"
    );

    // Plans that lie about themselves.
    assert!(
        planned_receiver(vec![pf(1, "a", 1)]).is_err(),
        "ids out of order"
    );
    assert!(
        planned_receiver(vec![pf(0, "a", 1), pf(1, "a", 1)]).is_err(),
        "path twice"
    );
    let mut r = Receiver::new();
    r.handle_frame(Frame::PlanStart {
        chunk_size: CHUNK,
        files: Some(1),
        bytes: Some(1),
    })
    .unwrap();
    assert!(
        r.handle_frame(Frame::PlanFiles {
            files: vec![pf(0, "a", 2)]
        })
        .is_err(),
        "more bytes than announced"
    );
    let mut r = Receiver::new();
    assert!(matches!(
        r.handle_frame(Frame::PlanStart {
            chunk_size: CHUNK,
            files: Some(10_000_000),
            bytes: Some(1)
        }),
        Err(ProtoError::TooLarge(_))
    ));
    let mut r = Receiver::new();
    r.handle_frame(Frame::PlanStart {
        chunk_size: CHUNK,
        files: Some(1),
        bytes: Some(1_000_000_000_000_000),
    })
    .unwrap();
    assert!(matches!(
        r.handle_frame(Frame::PlanFiles {
            files: vec![pf(0, "huge", 1_000_000_000_000_000)]
        }),
        Err(ProtoError::TooLarge(_))
    ));
    // Goodbye too early.
    let mut r = planned_receiver(vec![pf(0, "a", 1)]).unwrap();
    r.handle_frame(Frame::PlanEnd).unwrap();
    assert!(r.handle_frame(Frame::Bye).is_err());
}

#[test]
fn a_plan_beyond_the_destinations_room_is_refused_before_it_is_kept() {
    // Announced up front.
    let mut r = Receiver::new();
    r.set_room(1000);
    assert!(matches!(
        r.handle_frame(Frame::PlanStart {
            chunk_size: CHUNK,
            files: Some(1),
            bytes: Some(1001),
        }),
        Err(ProtoError::TooLarge(m)) if m.contains("1001 bytes") && m.contains("only 1000")
    ));
    // An open plan: refused at the file that goes past the room, which is
    // not kept.
    let mut r = Receiver::new();
    r.set_room(1000);
    r.handle_frame(Frame::PlanStart {
        chunk_size: CHUNK,
        files: None,
        bytes: None,
    })
    .unwrap();
    r.handle_frame(Frame::PlanFiles {
        files: vec![pf(0, "a", 600)],
    })
    .unwrap();
    assert!(matches!(
        r.handle_frame(Frame::PlanFiles {
            files: vec![pf(1, "b", 401)]
        }),
        Err(ProtoError::TooLarge(_))
    ));
    assert_eq!(r.file_count(), 1);
    assert!(r.file(FileId(1)).is_none());
}

#[test]
fn sender_refuses_protocol_abuse() {
    let layout = ChunkLayout::new(CHUNK).unwrap();
    let mut s = Sender::new(layout, vec![pf(0, "a", 100)]).unwrap();
    assert!(
        s.handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Partial(ChunkBitmap::new(5)))]
        })
        .is_err(),
        "bitmap of the wrong size"
    );
    let mut s = Sender::new(layout, vec![pf(0, "a", 100)]).unwrap();
    assert!(
        s.handle_frame(Frame::FileDone {
            file: FileId(0),
            digest: Digest::default()
        })
        .is_err(),
        "done before have"
    );
    s.handle_frame(Frame::Have {
        files: vec![(FileId(0), HaveState::Nothing)],
    })
    .unwrap();
    let c = s.next_chunk().unwrap();
    s.chunk_sent(c, Digest::of_chunk(b"x")).unwrap();
    assert!(matches!(
        s.handle_frame(Frame::FileDone {
            file: FileId(0),
            digest: Digest::default()
        }),
        Err(ProtoError::DigestMismatch { .. })
    ));
    let mut s = Sender::new(layout, vec![pf(0, "a", 100)]).unwrap();
    let err = s
        .handle_frame(Frame::Error {
            code: ErrorCode::NoSpace,
            message: "no space left on the appliance".into(),
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoSpace);
    assert!(Sender::new(layout, vec![pf(1, "a", 1)]).is_err());
}

#[test]
fn plans_of_many_files_travel_in_bounded_frames() {
    let layout = ChunkLayout::new(CHUNK).unwrap();
    let long = "d/".repeat(1000);
    let files: Vec<PlanFile> = (0..3000)
        .map(|i| pf(i, &format!("{long}f.{i:06}.exr"), 1))
        .collect();
    let mut s = Sender::new(layout, files).unwrap();
    let mut r = Receiver::new();
    let mut frames = 0;
    while let Some(f) = s.poll_frame() {
        let bytes = encode(&f).unwrap();
        assert!(bytes.len() <= MAX_FRAME_LEN);
        r.handle_frame(decode_body(&bytes[LEN_PREFIX..]).unwrap())
            .unwrap();
        frames += 1;
    }
    assert!(frames > 3, "batched into several frames");
    assert_eq!(r.file_count(), 3000);
    let mut planned = 0;
    while let Some(ev) = r.poll_event() {
        if let ReceiverEvent::Planned { first, count } = ev {
            for id in first.0..first.0 + count {
                r.set_local(FileId(id), LocalState::Nothing).unwrap();
            }
            planned += count;
        }
    }
    assert_eq!(planned, 3000);
    let mut haves = 0;
    while let Some(f) = r.poll_frame() {
        assert!(encode(&f).unwrap().len() <= MAX_FRAME_LEN);
        haves += 1;
    }
    assert!(haves >= 1);
}

#[test]
fn a_lower_priority_file_starts_only_after_higher_ones_are_delivered() {
    let mut rng = Rng(11);
    let src = source(
        &mut rng,
        &[
            ("a.mp4", 300_000, Priority::HIGH),
            ("b.mp4", 300_000, Priority::HIGH),
            ("f.0001.exr", 1_000, Priority::DEFAULT),
            ("f.0002.exr", 1_000, Priority::DEFAULT),
        ],
    );
    let layout = ChunkLayout::new(CHUNK).unwrap();
    let mut sender = Sender::new(layout, src.plan.clone()).unwrap();
    // The appliance's way: every receipt is checked.
    sender.verify_receipts();
    let mut receiver = Receiver::new();
    let mut delivered = Vec::new();
    let mut started_low_after = None;
    for _ in 0..10_000 {
        while let Some(f) = sender.poll_frame() {
            receiver.handle_frame(wire(f)).unwrap();
        }
        while let Some(ev) = receiver.poll_event() {
            match ev {
                ReceiverEvent::Planned { first, count } => {
                    for id in first.0..first.0 + count {
                        receiver.set_local(FileId(id), LocalState::Nothing).unwrap();
                    }
                }
                ReceiverEvent::FileComplete { file, .. } => receiver.committed(file),
                _ => {}
            }
        }
        while let Some(f) = receiver.poll_frame() {
            sender.handle_frame(wire(f)).unwrap();
        }
        while let Some(ev) = sender.poll_event() {
            if let SenderEvent::Delivered { file, .. } = ev {
                delivered.push(file.0);
            }
        }
        if sender.is_finished() {
            break;
        }
        // A wide window: everything that may go, goes at once.
        let mut batch = Vec::new();
        while let Some(chunk) = sender.next_chunk() {
            if chunk.file.0 >= 2 && started_low_after.is_none() {
                started_low_after = Some(delivered.len());
            }
            batch.push(chunk);
        }
        for chunk in batch {
            let f = &src.plan[chunk.file.0 as usize];
            let off = layout.offset(chunk.index) as usize;
            let len = layout.chunk_len(f.size, chunk.index).unwrap() as usize;
            let bytes = &src.data[chunk.file.0 as usize][off..off + len];
            let d = Digest::of_chunk(bytes);
            let h = ChunkHeader {
                chunk,
                len: len as u32,
            };
            if let Admission::Write { .. } = receiver.admit_chunk(&h).unwrap() {
                receiver.chunk_written(chunk, d, d);
            }
            sender.chunk_sent(chunk, d).unwrap();
        }
    }
    assert!(sender.is_finished());
    assert_eq!(
        started_low_after,
        Some(2),
        "frames start once both proxies are delivered"
    );
    assert_eq!(&delivered[..2], &[0, 1]);
}

#[test]
fn an_open_plan_takes_files_as_they_come_and_ends_when_told() {
    let layout = ChunkLayout::new(CHUNK).unwrap();
    let mut sender = Sender::open(layout);
    let mut receiver = Receiver::new();
    let pump = |sender: &mut Sender, receiver: &mut Receiver| {
        for _ in 0..100 {
            while let Some(f) = sender.poll_frame() {
                receiver.handle_frame(wire(f)).unwrap();
            }
            while let Some(ev) = receiver.poll_event() {
                match ev {
                    ReceiverEvent::Planned { first, count } => {
                        for id in first.0..first.0 + count {
                            receiver.set_local(FileId(id), LocalState::Nothing).unwrap();
                        }
                    }
                    ReceiverEvent::FileComplete { file, .. } => receiver.committed(file),
                    _ => {}
                }
            }
            while let Some(f) = receiver.poll_frame() {
                sender.handle_frame(wire(f)).unwrap();
            }
            while let Some(chunk) = sender.next_chunk() {
                let len = sender.chunk_len(chunk).unwrap() as usize;
                let bytes = vec![chunk.file.0 as u8; len];
                let d = Digest::of_chunk(&bytes);
                let h = ChunkHeader {
                    chunk,
                    len: len as u32,
                };
                if let Admission::Write { .. } = receiver.admit_chunk(&h).unwrap() {
                    receiver.chunk_written(chunk, d, d);
                }
                sender.chunk_sent(chunk, d).unwrap();
            }
        }
    };
    sender.add_files(vec![pf(0, "first.mp4", 100_000)]).unwrap();
    pump(&mut sender, &mut receiver);
    assert!(
        !sender.is_finished() && !receiver.is_finished(),
        "the plan is still open"
    );
    sender
        .add_files(vec![pf(1, "later/a.exr", 10), pf(2, "later/b.exr", 0)])
        .unwrap();
    assert!(
        sender.add_files(vec![pf(5, "bad", 1)]).is_err(),
        "ids continue in order"
    );
    pump(&mut sender, &mut receiver);
    assert!(!sender.is_finished());
    sender.end_plan();
    pump(&mut sender, &mut receiver);
    assert!(sender.is_finished() && receiver.is_finished());
    assert!(sender.add_files(vec![pf(3, "too-late", 1)]).is_err());
}

/// A sender that checks receipts, with one 3-chunk file planned and its
/// plan read by the receiver's side.
fn checked_sender(known: Option<Digest>) -> (Sender, Vec<u8>) {
    let layout = ChunkLayout::new(CHUNK).unwrap();
    let data: Vec<u8> = (0..CHUNK as usize * 3).map(|i| (i % 251) as u8).collect();
    let plan = vec![PlanFile {
        id: FileId(0),
        path: SharePath::parse("a.mov").unwrap(),
        size: data.len() as u64,
        mtime_ns: 0,
        priority: Priority::DEFAULT,
    }];
    let mut sender = Sender::new(layout, plan).unwrap();
    sender.verify_receipts();
    if let Some(k) = known {
        sender.know(FileId(0), k);
    }
    while sender.poll_frame().is_some() {}
    (sender, data)
}

fn hash_held(sender: &mut Sender, data: &[u8]) {
    while let Some(ev) = sender.poll_event() {
        if let SenderEvent::HashHeld { file, chunks } = ev {
            let digests = chunks
                .iter()
                .map(|i| {
                    let at = *i as usize * CHUNK as usize;
                    (*i, Digest::of_chunk(&data[at..at + CHUNK as usize]))
                })
                .collect();
            sender
                .held_hashed(file, digests)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn a_claimed_receipt_is_not_a_delivery() {
    let forged = Digest::of_chunk(b"made up");
    // Claiming the whole file with a made-up digest: refused, whether the
    // sender knows the digest or hashes its own copy.
    let (mut known, data) = checked_sender(Some(file_digest(&[0u8; 1])));
    let err = known
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Complete(forged))],
        })
        .unwrap_err();
    assert!(matches!(err, ProtoError::DigestMismatch { .. }), "{err:?}");
    let (mut unknown, _) = checked_sender(None);
    unknown
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Complete(forged))],
        })
        .unwrap();
    let Some(SenderEvent::HashHeld { chunks, .. }) = unknown.poll_event() else {
        panic!("the claim is checked against our own copy");
    };
    assert_eq!(chunks, [0, 1, 2]);
    let digests = chunks
        .iter()
        .map(|i| {
            let at = *i as usize * CHUNK as usize;
            (*i, Digest::of_chunk(&data[at..at + CHUNK as usize]))
        })
        .collect();
    assert!(matches!(
        unknown.held_hashed(FileId(0), digests),
        Err(ProtoError::DigestMismatch { .. })
    ));
    assert!(!unknown.is_finished());

    // Every bit set, then a made-up digest: refused too.
    let (mut partial, data) = checked_sender(None);
    let mut all = ChunkBitmap::new(3);
    for i in 0..3 {
        all.set(i);
    }
    partial
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Partial(all.clone()))],
        })
        .unwrap();
    hash_held(&mut partial, &data);
    assert!(matches!(
        partial.handle_frame(Frame::FileDone {
            file: FileId(0),
            digest: forged
        }),
        Err(ProtoError::DigestMismatch { .. })
    ));

    // The truth passes, held or claimed whole.
    let (mut honest, data) = checked_sender(None);
    honest
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Partial(all))],
        })
        .unwrap();
    hash_held(&mut honest, &data);
    honest
        .handle_frame(Frame::FileDone {
            file: FileId(0),
            digest: file_digest(&data),
        })
        .unwrap();
    assert!(honest.is_finished());
    let (mut whole, data) = checked_sender(Some(file_digest(
        &(0..CHUNK as usize * 3)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )));
    whole
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Complete(file_digest(&data)))],
        })
        .unwrap();
    assert!(whole.is_finished());
}

#[test]
fn a_resend_that_overtakes_its_streams_notice_is_honoured() {
    let (mut sender, data) = checked_sender(None);
    sender
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Nothing)],
        })
        .unwrap();
    let chunk = sender.next_chunk().unwrap();
    // The receiver found the chunk corrupt and asks again before we heard
    // that its stream finished.
    sender
        .handle_frame(Frame::Resend {
            file: chunk.file,
            index: chunk.index,
        })
        .unwrap();
    let at = chunk.index as usize * CHUNK as usize;
    let digest = Digest::of_chunk(&data[at..at + CHUNK as usize]);
    sender.chunk_sent(chunk, digest).unwrap();
    // It goes again.
    let mut again = Vec::new();
    while let Some(c) = sender.next_chunk() {
        again.push(c);
    }
    assert!(again.contains(&chunk), "{again:?}");
    // A resend of a chunk never sent is still a violation.
    let (mut fresh, _) = checked_sender(None);
    fresh
        .handle_frame(Frame::Have {
            files: vec![(FileId(0), HaveState::Nothing)],
        })
        .unwrap();
    assert!(
        fresh
            .handle_frame(Frame::Resend {
                file: FileId(0),
                index: 2
            })
            .is_err()
    );
}
