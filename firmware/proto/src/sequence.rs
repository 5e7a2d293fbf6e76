//! Frame sequences: the notation users type and the grouping of a folder of
//! frames into one line.
//!
//! Accepted notations (as in the tools facilities use today):
//! - `shot010.%04d.exr[1001-1100]`: printf-style padding with a frame range;
//! - `shot010.####.exr` or `shot010.####.exr[1001-1100]`: one `#` per digit;
//! - either without a range means every frame that exists.
//!
//! This module only parses and groups names; listing a folder is the
//! caller's business.

use std::collections::BTreeMap;
use std::fmt;

/// A sequence notation, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencePattern {
    /// Text before the frame number (may include folders).
    pub prefix: String,
    /// Digits in a frame number, zero-padded.
    pub padding: usize,
    /// Text after the frame number.
    pub suffix: String,
    /// Inclusive frame range, when given.
    pub range: Option<(u64, u64)>,
}

/// A sequence notation that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    #[error("bad frame range in {0:?}: expected [FIRST-LAST] with FIRST <= LAST")]
    BadRange(String),
    #[error("bad padding in {0:?}: expected %0Nd with N from 1 to 12")]
    BadPadding(String),
    #[error("more than one frame-number placeholder in {0:?}")]
    TwoPlaceholders(String),
    #[error("frame range too long in {0:?} (at most {MAX_FRAMES} frames)")]
    TooManyFrames(String),
}

/// The most frames one notation may select.
pub const MAX_FRAMES: u64 = 1_000_000;

impl SequencePattern {
    /// Parses `text` when it is a sequence notation; `Ok(None)` when it is a
    /// plain name.
    pub fn parse(text: &str) -> Result<Option<Self>, SequenceError> {
        let (body, range) = match text.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
            Some((body, range)) => (body, Some(parse_range(text, range)?)),
            None => (text, None),
        };
        let printf = find_printf(text, body)?;
        let hashes = find_hashes(body);
        let (start, end, padding) = match (printf, hashes) {
            (Some(_), Some(_)) => return Err(SequenceError::TwoPlaceholders(text.to_owned())),
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) if range.is_some() => {
                return Err(SequenceError::BadRange(text.to_owned()));
            }
            (None, None) => return Ok(None),
        };
        let suffix = &body[end..];
        if find_hashes(suffix).is_some() || suffix.contains("%0") {
            return Err(SequenceError::TwoPlaceholders(text.to_owned()));
        }
        Ok(Some(SequencePattern {
            prefix: body[..start].to_owned(),
            padding,
            suffix: suffix.to_owned(),
            range,
        }))
    }

    /// The frame number of `name`, when it belongs to this sequence.
    pub fn frame_of(&self, name: &str) -> Option<u64> {
        let digits = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if digits.is_empty()
            || digits.len() < self.padding
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Wider than the padding only when the number needs it (10000 in ####).
        if digits.len() > self.padding && digits.starts_with('0') {
            return None;
        }
        let frame: u64 = digits.parse().ok()?;
        match self.range {
            Some((first, last)) if frame < first || frame > last => None,
            _ => Some(frame),
        }
    }

    /// The name of frame `n`.
    pub fn frame_name(&self, n: u64) -> String {
        frame_name(&self.prefix, self.padding, &self.suffix, n)
    }

    /// Splits the prefix into its folder (before the last `/`) and the file
    /// prefix within it.
    pub fn folder(&self) -> (&str, &str) {
        match self.prefix.rfind('/') {
            Some(i) => (&self.prefix[..i], &self.prefix[i + 1..]),
            None => ("", &self.prefix),
        }
    }
}

fn parse_range(text: &str, range: &str) -> Result<(u64, u64), SequenceError> {
    let bad = || SequenceError::BadRange(text.to_owned());
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last - first >= MAX_FRAMES {
        return Err(SequenceError::TooManyFrames(text.to_owned()));
    }
    Ok((first, last))
}

/// Finds `%0Nd` (or `%d`): returns (start, end, padding).
fn find_printf(text: &str, body: &str) -> Result<Option<(usize, usize, usize)>, SequenceError> {
    let Some(start) = body.find('%') else {
        return Ok(None);
    };
    let rest = &body[start + 1..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if !rest[digits.len()..].starts_with('d') {
        return Err(SequenceError::BadPadding(text.to_owned()));
    }
    let padding = if digits.is_empty() {
        1
    } else {
        digits
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=12).contains(p))
            .ok_or_else(|| SequenceError::BadPadding(text.to_owned()))?
    };
    Ok(Some((start, start + 1 + digits.len() + 1, padding)))
}

/// Finds the first run of `#`: returns (start, end, padding).
fn find_hashes(body: &str) -> Option<(usize, usize, usize)> {
    let start = body.find('#')?;
    let len = body[start..].bytes().take_while(|&b| b == b'#').count();
    Some((start, start + len, len))
}

/// The one way a frame's name is made: prefix, the number padded with
/// zeros to `padding` digits, suffix.
pub fn frame_name(prefix: &str, padding: usize, suffix: &str, n: u64) -> String {
    format!("{prefix}{n:0padding$}{suffix}")
}

/// A run of numbered frames found among names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub prefix: String,
    pub padding: usize,
    pub suffix: String,
    /// Frame numbers present, ascending.
    pub frames: Vec<u64>,
}

impl Sequence {
    pub fn first(&self) -> u64 {
        self.frames.first().copied().unwrap_or(0)
    }

    pub fn last(&self) -> u64 {
        self.frames.last().copied().unwrap_or(0)
    }

    /// The name of frame `n` of this sequence.
    pub fn frame_name(&self, n: u64) -> String {
        frame_name(&self.prefix, self.padding, &self.suffix, n)
    }

    /// The names of the frames present, in order.
    pub fn frame_names(&self) -> impl Iterator<Item = String> + '_ {
        self.frames.iter().map(|f| self.frame_name(*f))
    }

    /// Gaps between the first and last frame, as inclusive ranges.
    pub fn missing(&self) -> Vec<(u64, u64)> {
        self.frames
            .windows(2)
            .filter(|w| w[1] > w[0] + 1)
            .map(|w| (w[0] + 1, w[1] - 1))
            .collect()
    }

    /// The sequence in `####` notation, without its range.
    pub fn pattern(&self) -> String {
        format!("{}{}{}", self.prefix, "#".repeat(self.padding), self.suffix)
    }

    /// The sequence in `####` notation with its range.
    pub fn notation(&self) -> String {
        format!("{}[{}-{}]", self.pattern(), self.first(), self.last())
    }
}

/// Frame ranges as people write them: `1004` alone, `1007-1008`.
pub fn range_texts(ranges: &[(u64, u64)]) -> Vec<String> {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect()
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} frames", self.notation(), self.frames.len())?;
        let missing = self.missing();
        if !missing.is_empty() {
            write!(f, ", missing {}", range_texts(&missing).join(", "))?;
        }
        f.write_str(")")
    }
}

/// Either a lone name or a sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouped {
    Single(String),
    Sequence(Sequence),
}

/// Splits a name into (prefix, digits, suffix) around its last run of
/// digits before the extension.
fn split_frame(name: &str) -> Option<(&str, &str, &str)> {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    let bytes = name.as_bytes();
    let mut end = name.len();
    // The last digit run within the final component.
    while end > base_start && !bytes[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end == base_start {
        return None;
    }
    let mut start = end;
    while start > base_start && bytes[start - 1].is_ascii_digit() {
        start -= 1;
    }
    Some((&name[..start], &name[start..end], &name[end..]))
}

/// Groups names into sequences (two or more frames sharing prefix, padding
/// and suffix) and singles, in name order.
pub fn group<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Grouped> {
    let mut runs: BTreeMap<(String, usize, String), Vec<(u64, String)>> = BTreeMap::new();
    let mut singles = Vec::new();
    for name in names {
        match split_frame(name) {
            Some((prefix, digits, suffix)) if digits.len() <= 12 => {
                let frame = digits.parse::<u64>().unwrap_or(0);
                runs.entry((prefix.to_owned(), digits.len(), suffix.to_owned()))
                    .or_default()
                    .push((frame, name.to_owned()));
            }
            _ => singles.push(name.to_owned()),
        }
    }
    let mut out: Vec<(String, Grouped)> = singles
        .into_iter()
        .map(|s| (s.clone(), Grouped::Single(s)))
        .collect();
    for ((prefix, padding, suffix), mut frames) in runs {
        if frames.len() < 2 {
            for (_, name) in frames {
                out.push((name.clone(), Grouped::Single(name)));
            }
            continue;
        }
        frames.sort();
        let key = frames[0].1.clone();
        out.push((
            key,
            Grouped::Sequence(Sequence {
                prefix,
                padding,
                suffix,
                frames: frames.into_iter().map(|(f, _)| f).collect(),
            }),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_printf_and_hashes() {
        let p = SequencePattern::parse("shot010.%04d.exr[1001-1100]")
            .unwrap()
            .unwrap();
        assert_eq!(p.prefix, "shot010.");
        assert_eq!(p.padding, 4);
        assert_eq!(p.suffix, ".exr");
        assert_eq!(p.range, Some((1001, 1100)));
        assert_eq!(p.frame_name(1001), "shot010.1001.exr");
        assert_eq!(p.frame_of("shot010.1050.exr"), Some(1050));
        assert_eq!(p.frame_of("shot010.1101.exr"), None);
        assert_eq!(p.frame_of("shot010.105.exr"), None);

        let p = SequencePattern::parse("dir/seq.####.png").unwrap().unwrap();
        assert_eq!(p.range, None);
        assert_eq!(p.folder(), ("dir", "seq."));
        assert_eq!(p.frame_of("dir/seq.0007.png"), Some(7));
        assert_eq!(p.frame_of("dir/seq.12345.png"), Some(12345));
        assert_eq!(p.frame_of("dir/seq.00007.png"), None);

        let p = SequencePattern::parse("movie.%04d.jpg[100-167]")
            .unwrap()
            .unwrap();
        assert_eq!(p.frame_name(100), "movie.0100.jpg");
        assert_eq!(SequencePattern::parse("plain.mov").unwrap(), None);
    }

    #[test]
    fn refuses_bad_notation() {
        for bad in [
            "a.%04d.exr[10-1]",
            "a.%04d.exr[x-2]",
            "a.%4x.exr",
            "a.%04d.%04d.exr",
            "a.##.##.exr",
            "a.%04d.####.exr",
            "plain.exr[1-2]",
            "a.%099d.exr",
            "a.####.exr[0-99999999]",
        ] {
            assert!(SequencePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_frames_and_names_gaps() {
        let mut names: Vec<String> = (1001..=1010)
            .filter(|f| *f != 1004 && *f != 1007 && *f != 1008)
            .map(|f| format!("shot010/shot010.{f}.exr"))
            .collect();
        names.push("shot010.mp4".into());
        names.push("readme.txt".into());
        names.push("take2.mov".into());
        let groups = group(names.iter().map(String::as_str));
        assert_eq!(groups.len(), 4);
        let seq = groups
            .iter()
            .find_map(|g| match g {
                Grouped::Sequence(s) => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(seq.frames.len(), 7);
        assert_eq!(seq.missing(), vec![(1004, 1004), (1007, 1008)]);
        assert_eq!(
            seq.to_string(),
            "shot010/shot010.####.exr[1001-1010] (7 frames, missing 1004, 1007-1008)"
        );
    }
}
