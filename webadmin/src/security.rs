//! Browser-facing protections that do not depend on who is logged in:
//! security headers on every page, the cross-site check on every form, and
//! constant-time comparison of secrets.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq as _;

/// No inline script or style, nothing from elsewhere, no framing, forms
/// post only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every web admin response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    set(h, "strict-transport-security", "max-age=31536000");
    // Pages show live state and one-time secrets: never from a cache.
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    response
}

/// Why a form was refused before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error("the form was sent from another site ({0})")]
    FetchSite(&'static str),
    #[error("the form was sent from another origin")]
    Origin,
    #[error("the form's security token is missing or out of date; reload the page and try again")]
    Token,
}

/// Refuses requests a browser marks as coming from another site.
/// `Sec-Fetch-Site` is sent by every current browser; `Origin` covers the
/// others. Both are set by the browser, not by page script.
pub fn same_origin(headers: &HeaderMap) -> Result<(), CrossSite> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // The browser vouches for it; `Origin` may then be "null" (it is
        // under some referrer policies), so it is not looked at.
        Some("same-origin") | Some("none") => return Ok(()),
        Some("same-site") => return Err(CrossSite::FetchSite("same-site")),
        Some(_) => return Err(CrossSite::FetchSite("cross-site")),
        None => {}
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        let expected = format!("https://{host}");
        if host.is_empty() || !secret_eq(origin, &expected) {
            return Err(CrossSite::Origin);
        }
    }
    Ok(())
}

/// Compares two secrets in time that depends only on their lengths.
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        assert_eq!(
            same_origin(&headers(&[("sec-fetch-site", "same-origin")])),
            Ok(())
        );
        assert_eq!(
            same_origin(&headers(&[("sec-fetch-site", "cross-site")])),
            Err(CrossSite::FetchSite("cross-site"))
        );
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        assert_eq!(
            same_origin(&headers(&[
                ("host", "ferry.example:8443"),
                ("origin", "https://evil.example")
            ])),
            Err(CrossSite::Origin)
        );
        assert_eq!(
            same_origin(&headers(&[
                ("host", "ferry.example:8443"),
                ("origin", "null")
            ])),
            Err(CrossSite::Origin)
        );
        assert_eq!(
            same_origin(&headers(&[
                ("host", "ferry.example:8443"),
                ("origin", "https://ferry.example:8443")
            ])),
            Ok(())
        );
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secret_eq("abc123", "abc123"));
        assert!(!secret_eq("abc123", "abc124"));
        assert!(!secret_eq("abc123", "abc1234"));
        assert!(!secret_eq("", "a"));
    }
}
