//! The tus 1.0 protocol over HTTP (core, creation, termination, checksum
//! with SHA-256), under `/api/v1/uploads/`: the [`ferryd_core::uploads`]
//! service does the work, these handlers speak the headers.
//!
//! An upload's URL is `/api/v1/uploads/{job}/{file}`, the file being its
//! path within the delivery in hex, so the URL needs no state of its own
//! and survives a restart. Requests come from the send page's script: the
//! session cookie, the browser's same-origin word and the CSRF header
//! ([`super::Scripted`]); no token ever rides in a URL.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ferryd_core::uploads::{Checksum, UploadError};
use futures::TryStreamExt as _;

use super::Scripted;
use crate::Web;

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,termination,checksum";

/// Every answer on the tus routes names the protocol's version, the
/// refusals made before a handler runs (no session, no CSRF header)
/// included: tus-js-client reads it on every response.
pub async fn versioned(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry("tus-resumable")
        .or_insert(HeaderValue::from_static(VERSION));
    response
}

/// A response with the protocol's headers.
fn tus(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    r
}

/// An error in the protocol's terms (a piece at the wrong offset is 409,
/// one that failed its checksum 460), in words for whoever reads it.
fn refused(e: &UploadError) -> Response {
    let status = match e {
        UploadError::Checksum(_) => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
        UploadError::Offset { .. } => StatusCode::CONFLICT,
        e => crate::layout::status_of(e),
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        log::error!("upload: {e}");
    }
    (status, e.to_string()).into_response()
}

fn bad(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

/// Every request but OPTIONS names the protocol version it speaks; the
/// refusal for one that does not.
fn not_tus(headers: &HeaderMap) -> Option<Response> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(VERSION) => None,
        _ => Some(tus(
            StatusCode::PRECONDITION_FAILED,
            &[("tus-version", VERSION.into())],
        )),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs.
fn metadata(headers: &HeaderMap) -> std::collections::HashMap<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    headers
        .get("upload-metadata")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let key = it.next()?.to_owned();
            let value = b64.decode(it.next().unwrap_or("")).ok()?;
            Some((key, String::from_utf8(value).ok()?))
        })
        .collect()
}

/// `Upload-Checksum: sha256 BASE64`, or what is wrong with it.
fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, &'static str> {
    let Some(v) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let text = v.to_str().map_err(|_| "Upload-Checksum is not text")?;
    let (algorithm, value) = text
        .split_once(' ')
        .ok_or("Upload-Checksum is ALGORITHM BASE64")?;
    if algorithm != "sha256" {
        return Err("the only checksum algorithm here is sha256");
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| "the checksum is not base64")?;
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "a SHA-256 checksum is 32 bytes")?;
    Ok(Some(Checksum::Sha256(raw)))
}

/// `OPTIONS /api/v1/uploads`: what this server speaks.
pub async fn options() -> Response {
    tus(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", VERSION.into()),
            ("tus-extension", EXTENSIONS.into()),
            ("tus-checksum-algorithm", "sha256".into()),
        ],
    )
}

/// `POST /api/v1/uploads` (creation): metadata `job` and `path` name one
/// file of the caller's upload job; `Upload-Length` must be its size.
pub async fn create(
    State(web): State<Arc<Web>>,
    Scripted(member): Scripted,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = not_tus(&headers) {
        return r;
    }
    let meta = metadata(&headers);
    let (Some(job), Some(path)) = (
        meta.get("job").and_then(|j| j.parse::<i64>().ok()),
        meta.get("path"),
    ) else {
        return bad("Upload-Metadata names the upload's job and path");
    };
    let Some(length) = number(&headers, "upload-length") else {
        return bad("Upload-Length is the file's size (deferred lengths are not taken)");
    };
    let uploads = &web.services.uploads;
    let mut up = match uploads.open(&member.user, job, path, member.from).await {
        Ok(u) => u,
        Err(e) => return refused(&e),
    };
    if length != up.size() {
        return bad(&format!(
            "{path} was declared with {} bytes, not {length}",
            up.size()
        ));
    }
    // A new upload: what an earlier attempt left goes, and an empty file
    // is complete already.
    if let Err(e) = uploads.begin(&mut up).await {
        return refused(&e);
    }
    let location = format!("/api/v1/uploads/{job}/{}", hex(path));
    tus(StatusCode::CREATED, &[("location", location)])
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

async fn opened(
    web: &Web,
    member: &crate::auth::Member,
    job: i64,
    file: &str,
) -> Result<ferryd_core::uploads::Upload, Response> {
    let Some(path) = unhex(file) else {
        return Err(tus(StatusCode::NOT_FOUND, &[]));
    };
    web.services
        .uploads
        .open(&member.user, job, &path, member.from)
        .await
        .map_err(|e| refused(&e))
}

/// `HEAD /api/v1/uploads/{job}/{file}`: where the upload stands.
pub async fn head(
    State(web): State<Arc<Web>>,
    Scripted(member): Scripted,
    Path((job, file)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = not_tus(&headers) {
        return r;
    }
    let mut up = match opened(&web, &member, job, &file).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match web.services.uploads.offset(&mut up).await {
        Ok(at) => tus(
            StatusCode::OK,
            &[
                ("upload-offset", at.to_string()),
                ("upload-length", up.size().to_string()),
                ("cache-control", "no-store".into()),
            ],
        ),
        Err(e) => refused(&e),
    }
}

/// `PATCH /api/v1/uploads/{job}/{file}`: bytes at `Upload-Offset`.
pub async fn patch(
    State(web): State<Arc<Web>>,
    Scripted(member): Scripted,
    Path((job, file)): Path<(i64, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = not_tus(&headers) {
        return r;
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/offset+octet-stream")
    {
        return tus(StatusCode::UNSUPPORTED_MEDIA_TYPE, &[]);
    }
    let Some(offset) = number(&headers, "upload-offset") else {
        return bad("Upload-Offset says where the bytes go");
    };
    let sum = match checksum(&headers) {
        Ok(s) => s,
        Err(why) => return bad(why),
    };
    let mut stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut up = match opened(&web, &member, job, &file).await {
        Ok(u) => u,
        Err(r) => return drained(r, &mut stream, 0).await,
    };
    match web
        .services
        .uploads
        .append(&mut up, offset, sum, &mut stream)
        .await
    {
        Ok(at) => tus(StatusCode::NO_CONTENT, &[("upload-offset", at.to_string())]),
        Err(e) => drained(refused(&e), &mut stream, up.size()).await,
    }
}

/// Reads what is left of a refused piece before answering, up to the
/// file's size (or a little, for an upload that was not found), so the
/// client reads the answer instead of a connection cut while it was still
/// sending; a client that sends more than that has its connection closed.
async fn drained(
    answer: Response,
    body: &mut (impl futures::Stream<Item = std::io::Result<axum::body::Bytes>> + Unpin),
    size: u64,
) -> Response {
    use futures::StreamExt as _;
    let mut left = size.max(1 << 20);
    while let Some(Ok(piece)) = body.next().await {
        left = left.saturating_sub(piece.len() as u64);
        if left == 0 {
            break;
        }
    }
    answer
}

/// `DELETE /api/v1/uploads/{job}/{file}` (termination): the part goes.
pub async fn delete(
    State(web): State<Arc<Web>>,
    Scripted(member): Scripted,
    Path((job, file)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = not_tus(&headers) {
        return r;
    }
    let mut up = match opened(&web, &member, job, &file).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match web.services.uploads.terminate(&mut up).await {
        Ok(()) => tus(StatusCode::NO_CONTENT, &[]),
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_the_url() {
        for p in ["shot010/shot010.1001.exr", "scène 20.mov", "a"] {
            assert_eq!(unhex(&hex(p)).as_deref(), Some(p));
        }
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn metadata_and_checksums_are_read_as_tus_writes_them() {
        let mut h = HeaderMap::new();
        h.insert(
            "upload-metadata",
            HeaderValue::from_static("job MTI=,path c2hvdC5tb3Y=,empty"),
        );
        let m = metadata(&h);
        assert_eq!(m["job"], "12");
        assert_eq!(m["path"], "shot.mov");
        assert_eq!(m["empty"], "");
        h.insert(
            "upload-checksum",
            HeaderValue::from_static("sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
        );
        assert!(matches!(checksum(&h), Ok(Some(Checksum::Sha256(_)))));
        h.insert("upload-checksum", HeaderValue::from_static("md5 xyz"));
        assert!(checksum(&h).is_err());
    }
}
