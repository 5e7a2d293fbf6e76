//! Downloads over HTTP, as browsers' download managers and `curl -C -`
//! expect them: `Accept-Ranges`, a strong `ETag`, `Range` with
//! `If-Range`, `Last-Modified`, and a `Content-Disposition` whose name is
//! safe in any browser (RFC 6266, with `filename*` for names beyond
//! ASCII).
//!
//! [`answer`] is the rule (which bytes a request gets), a pure function of
//! its headers; [`respond`] turns it into a response around a body the
//! caller streams. The deliveries pages and the REST API's file route
//! both answer through here, so they cannot disagree.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferryd_core::portal::{Opened, Portal, PortalError};
use futures::stream::BoxStream;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a request for an entity of `len` bytes gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every byte (200).
    Whole,
    /// One range of it (206).
    Part(Range<u64>),
    /// A range that lies outside it (416).
    Unsatisfiable,
}

/// The rule: a single satisfiable range is served as asked, unless
/// `If-Range` names another version (then the whole, current entity). A
/// request for several ranges gets the whole entity, which HTTP allows
/// and every download manager handles (none asks for several).
pub fn answer(method: &Method, headers: &HeaderMap, len: u64, etag: &str) -> Answer {
    // HEAD ignores Range (RFC 9110 14.2); an empty file is always whole,
    // so asking for it is receiving it.
    if *method == Method::HEAD || len == 0 {
        return Answer::Whole;
    }
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Answer::Whole;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        // Only a strong validator may make a range (RFC 9110 13.1.5); a
        // date is never ours, so it means "the entity changed".
        if if_range.as_bytes() != etag.as_bytes() {
            return Answer::Whole;
        }
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        // A Range we cannot read is ignored, as HTTP says.
        return Answer::Whole;
    };
    match parsed.validate(len).as_deref() {
        Ok([one]) => Answer::Part(*one.start()..*one.end() + 1),
        Ok(_) => Answer::Whole,
        Err(_) => Answer::Unsatisfiable,
    }
}

/// What is being downloaded.
#[derive(Debug, Clone)]
pub struct Entity {
    pub len: u64,
    /// A strong validator, quoted.
    pub etag: String,
    /// Seconds since the epoch.
    pub modified: Option<i64>,
    /// The name the browser saves it under.
    pub name: String,
    pub content_type: &'static str,
}

/// The response to a download request: the headers, and the body `bytes`
/// streams for the range answered.
pub fn respond(
    method: &Method,
    headers: &HeaderMap,
    entity: &Entity,
    bytes: impl FnOnce(Range<u64>) -> BoxStream<'static, io::Result<Bytes>>,
) -> Response {
    let answer = answer(method, headers, entity.len, &entity.etag);
    let (status, range) = match answer {
        Answer::Whole => (StatusCode::OK, 0..entity.len),
        Answer::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        Answer::Unsatisfiable => {
            let mut r = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range asked for is outside the {} bytes", entity.len),
            )
                .into_response();
            set(
                r.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{}", entity.len),
            );
            return r;
        }
    };
    let body = Body::from_stream(bytes(range.clone()));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::ETAG, &entity.etag);
    set(h, header::CONTENT_TYPE, entity.content_type);
    set(
        h,
        header::CONTENT_LENGTH,
        &(range.end - range.start).to_string(),
    );
    set(h, header::CONTENT_DISPOSITION, &disposition(&entity.name));
    // The security headers' no-store stays: a delivery is not for caches.
    if let Some(at) = entity.modified.and_then(http_date) {
        set(h, header::LAST_MODIFIED, &at);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{}", range.start, range.end - 1, entity.len),
        );
    }
    response
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Everything but what RFC 5987's `attr-char` allows unencoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment` with the name twice: as plain ASCII (anything else, and
/// quotes, backslashes, controls and path separators, become `_`) for old
/// clients, and exactly, percent-encoded in UTF-8, as `filename*`.
pub fn disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | '%' | ';') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A name with nothing readable left in ASCII gets a neutral one there.
    let plain = if !plain.chars().any(|c| c.is_ascii_alphanumeric()) {
        "download".to_owned()
    } else {
        plain
    };
    let exact = name.replace(['/', '\\'], "_");
    format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        utf8_percent_encode(&exact, ATTR)
    )
}

/// An HTTP date (RFC 9110 5.6.7).
fn http_date(secs: i64) -> Option<String> {
    let t = jiff::Timestamp::from_second(secs).ok()?;
    Some(t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

/// One file of an opened delivery, resumable.
pub async fn file(
    portal: &Portal,
    opened: Opened,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let index = match opened.file(path) {
        Ok(i) => i,
        Err(e) => return refused(&e),
    };
    let opened = Arc::new(opened);
    if let Err(e) = portal.check(&opened, index).await {
        return refused(&e);
    }
    let f = &opened.files[index];
    let entity = Entity {
        len: f.size,
        etag: f.etag(),
        modified: Some(f.mtime_ns.div_euclid(1_000_000_000)),
        name: f.file_name().to_owned(),
        content_type: "application/octet-stream",
    };
    let portal = portal.clone();
    let stream_of = opened.clone();
    respond(method, headers, &entity, move |range| {
        portal.file_bytes(stream_of, index, range)
    })
}

/// The whole of an opened delivery as one zip, resumable.
pub fn zip(portal: &Portal, opened: Opened, method: &Method, headers: &HeaderMap) -> Response {
    let plan = match portal.zip(&opened) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    let entity = Entity {
        len: plan.layout.len(),
        etag: plan.etag.clone(),
        modified: None,
        name: format!("{}.zip", zip_name(&opened.delivery.name)),
        content_type: "application/zip",
    };
    let portal = portal.clone();
    let (opened, plan) = (Arc::new(opened), Arc::new(plan));
    respond(method, headers, &entity, move |range| {
        portal.zip_bytes(opened, plan, range)
    })
}

/// A delivery's name as a file name.
fn zip_name(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if n.trim().is_empty() {
        "delivery".into()
    } else {
        n
    }
}

/// A refusal of a download, in plain text (a download manager or a
/// script shows it), with the status its kind of failure has everywhere.
pub fn refused(e: &PortalError) -> Response {
    let status = crate::layout::status_of(e);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        log::error!("download: {e}");
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        e.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges_are_served_as_asked_unless_the_entity_changed() {
        let tag = "\"b3-abc\"";
        let get = &Method::GET;
        let answer = |h: &HeaderMap, len, tag| super::answer(get, h, len, tag);
        assert_eq!(answer(&HeaderMap::new(), 100, tag), Answer::Whole);
        let r = |v: &str| with(&[(header::RANGE, v)]);
        assert_eq!(answer(&r("bytes=10-19"), 100, tag), Answer::Part(10..20));
        assert_eq!(answer(&r("bytes=90-"), 100, tag), Answer::Part(90..100));
        assert_eq!(answer(&r("bytes=-5"), 100, tag), Answer::Part(95..100));
        assert_eq!(answer(&r("bytes=50-500"), 100, tag), Answer::Part(50..100));
        assert_eq!(answer(&r("bytes=100-"), 100, tag), Answer::Unsatisfiable);
        assert_eq!(
            answer(&r("bytes=0-"), 0, tag),
            Answer::Whole,
            "an empty file"
        );
        assert_eq!(
            super::answer(&Method::HEAD, &r("bytes=10-19"), 100, tag),
            Answer::Whole
        );
        assert_eq!(answer(&r("bytes=0-1,5-6"), 100, tag), Answer::Whole);
        assert_eq!(answer(&r("pages=1"), 100, tag), Answer::Whole);
        // If-Range: the same version resumes; another gets it whole.
        let same = with(&[(header::RANGE, "bytes=10-"), (header::IF_RANGE, tag)]);
        assert_eq!(answer(&same, 100, tag), Answer::Part(10..100));
        let other = with(&[
            (header::RANGE, "bytes=10-"),
            (header::IF_RANGE, "\"b3-old\""),
        ]);
        assert_eq!(answer(&other, 100, tag), Answer::Whole);
        let date = with(&[
            (header::RANGE, "bytes=10-"),
            (header::IF_RANGE, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert_eq!(answer(&date, 100, tag), Answer::Whole);
    }

    #[test]
    fn names_are_safe_and_exact() {
        assert_eq!(
            disposition("A001_C002.mov"),
            "attachment; filename=\"A001_C002.mov\"; filename*=UTF-8''A001_C002.mov"
        );
        let d = disposition("Scène \"finale\"; v2.mov");
        assert!(
            d.starts_with("attachment; filename=\"Sc_ne _finale__ v2.mov\"; "),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''Sc%C3%A8ne%20%22finale%22%3B%20v2.mov"),
            "{d}"
        );
        // No header splitting, no path.
        let d = disposition("../x\r\ny.mov");
        assert!(
            !d.contains('\r') && !d.contains('\n') && !d.contains('/'),
            "{d}"
        );
        assert!(disposition("日本").contains("filename=\"download\""));
    }

    #[test]
    fn a_zip_is_named_after_its_delivery_safely() {
        assert_eq!(zip_name("Dailies 12/03"), "Dailies 12_03");
        assert_eq!(zip_name("  "), "delivery");
    }

    #[test]
    fn http_dates_are_in_gmt() {
        assert_eq!(
            http_date(784111777).unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
