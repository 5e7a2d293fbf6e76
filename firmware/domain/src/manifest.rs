//! A delivery's manifest as text, in b3sum's format: one line per file,
//! `HEX  PATH`, which `b3sum -c` and `ferry verify` both check.
//!
//! A path holding a backslash or a line break is written as b3sum writes
//! it: the line starts with a backslash, and `\` and the line break are
//! escaped as `\\` and `\n`.

/// A manifest line that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest line {line}: {why}")]
pub struct ManifestError {
    pub line: usize,
    pub why: String,
}

/// The line for a file whose BLAKE3 is `hex`.
pub fn line(hex: &str, path: &str) -> String {
    if path.contains(['\\', '\n']) {
        let escaped = path.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{hex}  {escaped}\n")
    } else {
        format!("{hex}  {path}\n")
    }
}

/// The files of a manifest: (BLAKE3 hex, path), in its order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ManifestError> {
    let mut files = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |why: &str| ManifestError {
            line: i + 1,
            why: why.to_owned(),
        };
        if raw.is_empty() {
            continue;
        }
        let (escaped, body) = match raw.strip_prefix('\\') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let (hex, path) = body
            .split_once("  ")
            .ok_or_else(|| bad("expected a BLAKE3 in hex, two spaces and a path"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the BLAKE3 is not 64 hex digits"));
        }
        let path = if escaped {
            unescape(path).ok_or_else(|| bad("a backslash escapes neither \\ nor n"))?
        } else {
            path.to_owned()
        };
        if path.is_empty() {
            return Err(bad("no path"));
        }
        files.push((hex.to_ascii_lowercase(), path));
    }
    Ok(files)
}

fn unescape(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn lines_read_back_including_awkward_names() {
        let names = [
            "sh010/sh010.1001.exr",
            "cut v2.mov",
            "odd\\name",
            "two\nlines",
            "naïve.mov",
        ];
        let text: String = names.iter().map(|n| line(HEX, n)).collect();
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), names.len());
        for ((hex, path), name) in back.iter().zip(names) {
            assert_eq!(hex, HEX);
            assert_eq!(path, name);
        }
        assert!(line(HEX, "two\nlines").starts_with('\\'));
        assert_eq!(line(HEX, "a.mov"), format!("{HEX}  a.mov\n"));
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = parse(&format!("{HEX}  a.mov\nnot a line\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse(&format!("{}  a.mov\n", &HEX[..60])).is_err());
        assert!(parse(&format!("\\{HEX}  a\\x\n")).is_err());
        assert!(parse(&format!("{HEX}  \n")).is_err());
    }
}
