//! A ZIP archive of stored (uncompressed) files whose layout is fixed
//! before a byte of it is read, so that a browser downloading a whole
//! delivery learns its `Content-Length` at once and can resume it with
//! `Range`.
//!
//! The archive is described, not built: [`Layout::plan`] places every
//! member from its name and size alone, and [`Layout::regions`] says which
//! parts of the archive a byte range covers (a member's local header, a
//! slice of its data, its data descriptor, or the central directory). The
//! caller reads data from wherever the files are and asks the layout for
//! the other bytes. Nothing is held but the plan, so memory stays flat
//! whatever the archive's size.
//!
//! Each file's CRC-32 is only known once its bytes have been read, so its
//! local header carries none (general purpose flag bit 3) and the data
//! descriptor after its data and the central directory carry it: the caller
//! hands them the CRCs ([`Layout::descriptor`], [`Layout::central`]). Both
//! are a pure function of the plan and the CRCs, which is what makes the
//! archive the same on every request.
//!
//! ZIP64 (APPNOTE 6.3.10, section 4.5.3) is used where a field would
//! overflow: a member of 4 GiB or more, a header beyond 4 GiB, more than
//! 65,535 members, or a central directory beyond 4 GiB.

use std::ops::Range;

/// One name in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Forward slashes, relative; a folder's name ends with `/`.
    pub name: String,
    /// Bytes of a file; 0 for a folder.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

impl Member {
    pub fn file(name: impl Into<String>, size: u64, mtime: i64) -> Self {
        Member {
            name: name.into(),
            size,
            mtime,
        }
    }

    pub fn folder(name: impl Into<String>, mtime: i64) -> Self {
        let mut name = name.into();
        if !name.ends_with('/') {
            name.push('/');
        }
        Member {
            name,
            size: 0,
            mtime,
        }
    }

    pub fn is_folder(&self) -> bool {
        self.name.ends_with('/')
    }
}

/// Why a list of members cannot be an archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("the name {0:?} is longer than 65,535 bytes")]
    NameTooLong(String),
}

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
const MAX32: u64 = 0xFFFF_FFFF;
/// General purpose flags: sizes and CRC in a data descriptor (bit 3), and
/// names in UTF-8 (bit 11).
const FLAGS_FILE: u16 = 0x0808;
const FLAGS_FOLDER: u16 = 0x0800;
/// Version made by: Unix (3), spec 4.5; needed: 2.0, or 4.5 for ZIP64.
const MADE_BY: u16 = (3 << 8) | 45;

/// A member and where it lies.
#[derive(Debug, Clone)]
struct Placed {
    member: Member,
    header_at: u64,
    header_len: u64,
    /// Sizes as 8-byte fields (local ZIP64 extra, 24-byte descriptor).
    big: bool,
}

impl Placed {
    fn data_at(&self) -> u64 {
        self.header_at + self.header_len
    }

    fn descriptor_len(&self) -> u64 {
        match (self.member.is_folder(), self.big) {
            (true, _) => 0,
            (false, true) => 24,
            (false, false) => 16,
        }
    }

    fn end(&self) -> u64 {
        self.data_at() + self.member.size + self.descriptor_len()
    }

    /// 4.5 for a member with any ZIP64 field, 2.0 for the others.
    fn version_needed(&self) -> u16 {
        if self.big || self.header_at >= MAX32 {
            45
        } else {
            20
        }
    }

    /// The central directory's ZIP64 extra: the fields that overflow, in
    /// the order the format fixes.
    fn central_extra(&self) -> Vec<u8> {
        let mut fields = Vec::new();
        if self.member.size >= MAX32 {
            fields.extend_from_slice(&self.member.size.to_le_bytes());
            fields.extend_from_slice(&self.member.size.to_le_bytes());
        }
        if self.header_at >= MAX32 {
            fields.extend_from_slice(&self.header_at.to_le_bytes());
        }
        if fields.is_empty() {
            return fields;
        }
        let mut extra = Vec::with_capacity(4 + fields.len());
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&(fields.len() as u16).to_le_bytes());
        extra.extend_from_slice(&fields);
        extra
    }

    fn central_len(&self) -> u64 {
        46 + self.member.name.len() as u64 + self.central_extra().len() as u64
    }
}

/// What a part of the archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Member `i`'s local header ([`Layout::local_header`]).
    Header(usize),
    /// Member `i`'s bytes, from the file.
    Data(usize),
    /// Member `i`'s data descriptor ([`Layout::descriptor`]).
    Descriptor(usize),
    /// The central directory and the end records ([`Layout::central`]).
    Central,
}

/// A slice of one part: `skip` bytes into it, `len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub part: Part,
    pub skip: u64,
    pub len: u64,
}

/// Where every byte of the archive lies.
#[derive(Debug, Clone)]
pub struct Layout {
    placed: Vec<Placed>,
    central_at: u64,
    central_len: u64,
}

impl Layout {
    /// Places `members` in their order.
    pub fn plan(members: Vec<Member>) -> Result<Layout, ZipError> {
        let mut at = 0u64;
        let mut placed = Vec::with_capacity(members.len());
        for member in members {
            if member.name.len() > usize::from(u16::MAX) {
                return Err(ZipError::NameTooLong(member.name));
            }
            let big = member.size >= MAX32;
            let extra = if big { 20 } else { 0 };
            let p = Placed {
                header_len: 30 + member.name.len() as u64 + extra,
                header_at: at,
                big,
                member,
            };
            at = p.end();
            placed.push(p);
        }
        let central_len = placed.iter().map(Placed::central_len).sum::<u64>();
        let mut layout = Layout {
            placed,
            central_at: at,
            central_len,
        };
        layout.central_len += layout.end_len();
        Ok(layout)
    }

    /// The archive's length in bytes.
    pub fn len(&self) -> u64 {
        self.central_at + self.central_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.placed.iter().map(|p| &p.member)
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.placed[i].member
    }

    /// Whether the end records need ZIP64.
    pub fn is_zip64(&self) -> bool {
        self.placed.len() >= 0xFFFF
            || self.central_at >= MAX32
            || self.central_dir_len() >= MAX32
            || self.placed.iter().any(|p| p.big || p.header_at >= MAX32)
    }

    fn central_dir_len(&self) -> u64 {
        self.placed.iter().map(Placed::central_len).sum()
    }

    fn end_len(&self) -> u64 {
        22 + if self.is_zip64() { 56 + 20 } else { 0 }
    }

    /// Where part `part` begins and how long it is.
    fn span(&self, part: Part) -> (u64, u64) {
        match part {
            Part::Header(i) => (self.placed[i].header_at, self.placed[i].header_len),
            Part::Data(i) => (self.placed[i].data_at(), self.placed[i].member.size),
            Part::Descriptor(i) => {
                let p = &self.placed[i];
                (p.data_at() + p.member.size, p.descriptor_len())
            }
            Part::Central => (self.central_at, self.central_len),
        }
    }

    /// The parts that `range` (of the archive's bytes) covers, in order,
    /// each cut to the range. Empty parts are left out.
    pub fn regions(&self, range: Range<u64>) -> Vec<Region> {
        let end = range.end.min(self.len());
        if range.start >= end {
            return Vec::new();
        }
        // The first member whose bytes reach past the range's start.
        let first = self.placed.partition_point(|p| p.end() <= range.start);
        let parts = (first..self.placed.len())
            .flat_map(|i| [Part::Header(i), Part::Data(i), Part::Descriptor(i)])
            .chain(std::iter::once(Part::Central));
        let mut out = Vec::new();
        for part in parts {
            let (at, len) = self.span(part);
            if at >= end {
                break;
            }
            let from = range.start.max(at);
            let to = end.min(at + len);
            if from < to {
                out.push(Region {
                    part,
                    skip: from - at,
                    len: to - from,
                });
            }
        }
        out
    }

    /// Member `i`'s local header.
    pub fn local_header(&self, i: usize) -> Vec<u8> {
        let p = &self.placed[i];
        let m = &p.member;
        let (time, date) = dos_time(m.mtime);
        let mut b = Vec::with_capacity(p.header_len as usize);
        put32(&mut b, LOCAL);
        // The same version the central directory names for this member.
        put16(&mut b, p.version_needed());
        put16(
            &mut b,
            if m.is_folder() {
                FLAGS_FOLDER
            } else {
                FLAGS_FILE
            },
        );
        put16(&mut b, 0); // stored
        put16(&mut b, time);
        put16(&mut b, date);
        put32(&mut b, 0); // CRC: in the descriptor
        let size = if p.big { u32::MAX } else { 0 };
        put32(&mut b, size);
        put32(&mut b, size);
        put16(&mut b, m.name.len() as u16);
        put16(&mut b, if p.big { 20 } else { 0 });
        b.extend_from_slice(m.name.as_bytes());
        if p.big {
            // The sizes follow in the descriptor; here they are zero.
            put16(&mut b, 1);
            put16(&mut b, 16);
            b.extend_from_slice(&[0; 16]);
        }
        b
    }

    /// Member `i`'s data descriptor, once its CRC is known.
    pub fn descriptor(&self, i: usize, crc: u32) -> Vec<u8> {
        let p = &self.placed[i];
        let mut b = Vec::with_capacity(p.descriptor_len() as usize);
        if p.member.is_folder() {
            return b;
        }
        put32(&mut b, DESCRIPTOR);
        put32(&mut b, crc);
        if p.big {
            b.extend_from_slice(&p.member.size.to_le_bytes());
            b.extend_from_slice(&p.member.size.to_le_bytes());
        } else {
            put32(&mut b, p.member.size as u32);
            put32(&mut b, p.member.size as u32);
        }
        b
    }

    /// The central directory and the end records, given every member's
    /// CRC in order (a folder's is ignored).
    pub fn central(&self, crcs: &[u32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.central_len as usize);
        for (i, p) in self.placed.iter().enumerate() {
            let m = &p.member;
            let (time, date) = dos_time(m.mtime);
            let extra = p.central_extra();
            let folder = m.is_folder();
            put32(&mut b, CENTRAL);
            put16(&mut b, MADE_BY);
            put16(&mut b, p.version_needed());
            put16(&mut b, if folder { FLAGS_FOLDER } else { FLAGS_FILE });
            put16(&mut b, 0);
            put16(&mut b, time);
            put16(&mut b, date);
            put32(&mut b, if folder { 0 } else { crcs[i] });
            let size = m.size.min(MAX32) as u32;
            put32(&mut b, size);
            put32(&mut b, size);
            put16(&mut b, m.name.len() as u16);
            put16(&mut b, extra.len() as u16);
            put16(&mut b, 0); // comment
            put16(&mut b, 0); // disk
            put16(&mut b, 0); // internal attributes
            // Unix mode in the high half; MS-DOS's folder bit for others.
            let attrs = if folder {
                (0o040_755u32 << 16) | 0x10
            } else {
                0o100_644u32 << 16
            };
            put32(&mut b, attrs);
            put32(&mut b, p.header_at.min(MAX32) as u32);
            b.extend_from_slice(m.name.as_bytes());
            b.extend_from_slice(&extra);
        }
        let count = self.placed.len() as u64;
        let dir_len = b.len() as u64;
        if self.is_zip64() {
            let end64_at = self.central_at + dir_len;
            put32(&mut b, END64);
            b.extend_from_slice(&44u64.to_le_bytes());
            put16(&mut b, MADE_BY);
            put16(&mut b, 45);
            put32(&mut b, 0);
            put32(&mut b, 0);
            b.extend_from_slice(&count.to_le_bytes());
            b.extend_from_slice(&count.to_le_bytes());
            b.extend_from_slice(&dir_len.to_le_bytes());
            b.extend_from_slice(&self.central_at.to_le_bytes());
            put32(&mut b, LOCATOR64);
            put32(&mut b, 0);
            b.extend_from_slice(&end64_at.to_le_bytes());
            put32(&mut b, 1);
        }
        put32(&mut b, END);
        put16(&mut b, 0);
        put16(&mut b, 0);
        put16(&mut b, count.min(0xFFFF) as u16);
        put16(&mut b, count.min(0xFFFF) as u16);
        put32(&mut b, dir_len.min(MAX32) as u32);
        put32(&mut b, self.central_at.min(MAX32) as u32);
        put16(&mut b, 0);
        b
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS time and date (UTC; two-second steps; 1980 to 2107).
fn dos_time(secs: i64) -> (u16, u16) {
    let Ok(t) = jiff::Timestamp::from_second(secs) else {
        return (0, 0x21); // 1980-01-01
    };
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    let year = i32::from(dt.year()).clamp(1980, 2107);
    if i32::from(dt.year()) != year {
        return if year == 1980 {
            (0, 0x21)
        } else {
            (0xBF7D, 0xFF9F)
        };
    }
    let time = (u16::from(dt.hour() as u8) << 11)
        | (u16::from(dt.minute() as u8) << 5)
        | u16::from(dt.second() as u8 / 2);
    let date = (((year - 1980) as u16) << 9)
        | (u16::from(dt.month() as u8) << 5)
        | u16::from(dt.day() as u8);
    (time, date)
}

/// A running CRC-32 over a member's bytes, as they are read.
#[derive(Debug, Default, Clone)]
pub struct Crc(crc32fast::Hasher);

impl Crc {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the whole archive, with the files' bytes from `data`.
    fn render(layout: &Layout, data: &[Vec<u8>], range: Range<u64>) -> Vec<u8> {
        let crcs: Vec<u32> = data.iter().map(|d| crc32fast::hash(d)).collect();
        let mut out = Vec::new();
        for r in layout.regions(range) {
            let bytes = match r.part {
                Part::Header(i) => layout.local_header(i),
                Part::Data(i) => data[i].clone(),
                Part::Descriptor(i) => layout.descriptor(i, crcs[i]),
                Part::Central => layout.central(&crcs),
            };
            out.extend_from_slice(&bytes[r.skip as usize..(r.skip + r.len) as usize]);
        }
        out
    }

    fn sample() -> (Layout, Vec<Vec<u8>>) {
        let members = vec![
            Member::folder("shot/", 1_700_000_000),
            Member::file("shot/a.exr", 5, 1_700_000_000),
            Member::file("shot/b.exr", 3, 1_700_000_000),
            Member::file("edit.mov", 0, 1_700_000_000),
        ];
        let data = vec![b"".to_vec(), b"hello".to_vec(), b"abc".to_vec(), vec![]];
        (Layout::plan(members).unwrap(), data)
    }

    #[test]
    fn every_part_is_as_long_as_the_layout_says() {
        let (layout, data) = sample();
        let whole = render(&layout, &data, 0..layout.len());
        assert_eq!(whole.len() as u64, layout.len());
        for i in 0..4 {
            assert_eq!(
                layout.local_header(i).len() as u64,
                layout.span(Part::Header(i)).1
            );
            assert_eq!(
                layout.descriptor(i, 7).len() as u64,
                layout.span(Part::Descriptor(i)).1
            );
        }
        assert_eq!(layout.central(&[0; 4]).len() as u64, layout.central_len);
        assert!(!layout.is_zip64());
        // The end record names the directory where it is.
        let end = &whole[whole.len() - 22..];
        assert_eq!(&end[..4], &END.to_le_bytes());
        let at = u32::from_le_bytes(end[16..20].try_into().unwrap()) as u64;
        assert_eq!(at, layout.central_at);
        assert_eq!(&whole[at as usize..at as usize + 4], &CENTRAL.to_le_bytes());
    }

    #[test]
    fn any_range_is_the_same_bytes_as_the_whole() {
        let (layout, data) = sample();
        let whole = render(&layout, &data, 0..layout.len());
        for start in 0..layout.len() {
            for end in [start + 1, start + 7, start + 40, layout.len()] {
                let end = end.min(layout.len());
                let part = render(&layout, &data, start..end);
                assert_eq!(part, &whole[start as usize..end as usize], "{start}..{end}");
            }
        }
        assert!(layout.regions(layout.len()..layout.len() + 5).is_empty());
    }

    #[test]
    fn big_members_and_far_headers_use_zip64() {
        let five = 5 << 30;
        let layout = Layout::plan(vec![
            Member::file("big.exr", five, 0),
            Member::file("after.exr", 10, 0),
        ])
        .unwrap();
        assert!(layout.is_zip64());
        assert_eq!(layout.local_header(0).len(), 30 + 7 + 20);
        assert_eq!(layout.descriptor(0, 1).len(), 24);
        assert_eq!(layout.descriptor(1, 1).len(), 16);
        let central = layout.central(&[1, 2]);
        assert_eq!(central.len() as u64, layout.central_len);
        // The second member's header is past 4 GiB: its offset is in the
        // ZIP64 extra, and the 32-bit field says so.
        assert!(layout.placed[1].header_at > MAX32);
        assert_eq!(layout.placed[1].central_extra().len(), 4 + 8);
        let tail = &central[central.len() - 22 - 20 - 56..];
        assert_eq!(&tail[..4], &END64.to_le_bytes());
        // A range at the very end needs no member's bytes.
        let regions = layout.regions(layout.len() - 10..layout.len());
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].part, Part::Central);
    }

    #[test]
    fn many_members_need_zip64_end_records() {
        let members = (0..70_000)
            .map(|i| Member::file(format!("f{i}"), 1, 0))
            .collect();
        let layout = Layout::plan(members).unwrap();
        assert!(layout.is_zip64());
        let crcs = vec![0; 70_000];
        assert_eq!(layout.central(&crcs).len() as u64, layout.central_len);
    }

    #[test]
    fn dos_times_are_utc_in_two_second_steps() {
        // 2023-11-14 22:13:20 UTC
        let (time, date) = dos_time(1_700_000_000);
        assert_eq!(time >> 11, 22);
        assert_eq!((time >> 5) & 63, 13);
        assert_eq!((time & 31) * 2, 20);
        assert_eq!(date >> 9, 2023 - 1980);
        assert_eq!((date >> 5) & 15, 11);
        assert_eq!(date & 31, 14);
        assert_eq!(dos_time(0), (0, 0x21));
    }
}
