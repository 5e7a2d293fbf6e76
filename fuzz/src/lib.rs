//! Targets for hostile input: each takes arbitrary bytes, must never panic,
//! and checks what a parser promises about what it accepts. `tests/targets.rs`
//! runs them under bolero (a bounded number of inputs in `./tests/run`,
//! many more with `FERRY_FUZZ_ITERATIONS` or `cargo bolero`) and replays the
//! corpus in `fuzz/corpus/<target>/`.

use ferry_proto::sequence::SequencePattern;
use ferry_proto::{FrameDecoder, SharePath, ShareRef};

/// The frame decoder, fed in uneven pieces: frames over the cap are
/// refused before anything is allocated for them, and whatever decodes
/// encodes again to something that decodes the same.
pub fn frame(input: &[u8]) {
    let mut decoder = FrameDecoder::new();
    // Split where the first byte says, so frames straddle pushes.
    let cut = input
        .first()
        .map_or(0, |b| usize::from(*b) % (input.len().max(1)));
    for piece in [&input[..cut], &input[cut..]] {
        if decoder.push(piece).is_err() {
            return;
        }
        while let Ok(Some(frame)) = decoder.next_frame() {
            let bytes = ferry_proto::frame::encode(&frame).expect("a decoded frame encodes");
            let mut again = FrameDecoder::new();
            again
                .push(&bytes)
                .expect("its own encoding is under the cap");
            let back = again.next_frame().expect("decodes").expect("whole");
            assert_eq!(format!("{back:?}"), format!("{frame:?}"));
        }
    }
}

/// The one share-path checker: nothing it accepts can leave the share.
pub fn share_path(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    for parsed in [SharePath::parse(text), SharePath::parse_dir(text)] {
        let Ok(path) = parsed else { continue };
        let s = path.as_str();
        assert!(!s.starts_with('/'), "absolute: {s:?}");
        assert!(!s.contains('\\'), "backslash: {s:?}");
        assert!(!s.contains('\0'), "NUL: {s:?}");
        assert!(!s.chars().any(char::is_control), "control character: {s:?}");
        let b = s.as_bytes();
        assert!(
            !(b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'),
            "drive letter: {s:?}"
        );
        for c in path.components() {
            assert!(
                c != ".." && c != "." && !c.is_empty(),
                "component {c:?} in {s:?}"
            );
        }
        // What it accepts, it accepts again unchanged.
        if let Ok(again) = SharePath::parse(s) {
            assert_eq!(again.as_str(), s);
        }
    }
    let _ = ShareRef::parse(text);
}

/// Sequence notation: a parsed pattern selects a bounded number of frames.
pub fn sequence(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(Some(p)) = SequencePattern::parse(text)
        && let Some((first, last)) = p.range
    {
        assert!(first <= last, "{text:?}");
        assert!(
            last - first < ferry_proto::sequence::MAX_FRAMES,
            "{text:?} selects too many frames"
        );
        // A frame's name leads back to its number.
        assert_eq!(p.frame_of(&p.frame_name(first)), Some(first), "{text:?}");
    }
}

/// The daemon's configuration file: never a panic, only a named error.
pub fn config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(file) = ferryd::config::FileConfig::parse(text) {
        let _ = ferryd::config::Config::resolve(file, ferryd::config::Overrides::default());
    }
}

/// portguard's request decoder: a closed enum, nothing else gets through.
pub fn portguard(input: &[u8]) {
    if let Ok(request) =
        ferry_portguard::protocol::decode::<ferry_portguard::protocol::Request>(input)
    {
        let again = ferry_portguard::protocol::encode_body(&request).expect("a request encodes");
        let back: ferry_portguard::protocol::Request =
            ferry_portguard::protocol::decode(&again).expect("its own encoding decodes");
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
    }
}
