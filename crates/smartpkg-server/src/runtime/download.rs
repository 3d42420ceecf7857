//! `GET /runtime/v1/packages/{sha256}`: a package archive, addressed by its content. The URL
//! names the bytes for ever, so the answer is `immutable` and any CDN may keep it; it is
//! streamed from the blob store (a range of it when asked: a file's seek, a bucket's ranged
//! GET), never read whole into memory.
//!
//! No credentials: the URL itself is learned only from an authenticated update check, and
//! only archives of packages are served — never templates or drafts, which share the blob
//! store.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Ctx, Refused};

/// A byte range of a file of `len` bytes: (first, last) inclusive; Err when unsatisfiable.
/// One range only (`bytes=a-b`, `bytes=a-`, `bytes=-n`); a header that is not one of those is
/// ignored (the whole file), as RFC 9110 allows.
pub fn parse_range(h: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return None,
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len - 1)
        }
        (false, _) => {
            let first: u64 = a.parse().ok()?;
            let last: u64 = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse().ok()?
            };
            if first >= len {
                return Some(Err(()));
            }
            if first > last {
                return None;
            }
            (first, last.min(len - 1))
        }
    };
    Some(Ok(range))
}

fn known(state: &Ctx, sha: &str) -> bool {
    state
        .rt()
        .archives
        .read()
        .map(|s| s.contains(sha))
        .unwrap_or(false)
}

pub async fn package(
    State(state): State<Ctx>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let not_found = || {
        Refused::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such package archive",
        )
    };
    if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(not_found());
    }
    if !known(&state, &sha) {
        if !state
            .store
            .archive_known(sha.clone())
            .await
            .map_err(Refused::store)?
        {
            return Err(not_found());
        }
        if let Ok(mut s) = state.rt().archives.write() {
            s.insert(sha.clone());
        }
    }
    let etag = format!("\"{sha}\"");
    let fixed = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_string(),
        ),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CONTENT_TYPE, "application/zip".to_string()),
    ];
    // If-None-Match compares weakly (RFC 9110 §13.1.2): `W/"…"` of our tag matches too.
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        });
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, fixed).into_response());
    }
    // If-Range compares strongly (§13.1.5): only our exact tag keeps the Range; a weak tag, a
    // date (we give no Last-Modified to match it against) or another tag asks for the whole.
    let range_applies = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|t| t.trim() == etag));
    let range_header = headers
        .get(header::RANGE)
        .filter(|_| range_applies)
        .and_then(|v| v.to_str().ok());
    let failed = |e: smartpkg_store::StoreError| {
        tracing::error!(error = %e, "runtime: an archive cannot be read");
        not_found()
    };
    let len = state.blobs.size(&sha).await.map_err(failed)?;
    let (status, range) = match range_header.and_then(|h| parse_range(h, len)) {
        None => (StatusCode::OK, None),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, Some((a, b))),
        Some(Err(())) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response())
        }
    };
    // An empty archive cannot be: a package has at least its ext.json. Still, no range of
    // nothing is asked of the store.
    let stream = if len == 0 {
        None
    } else {
        Some(state.blobs.stream(&sha, range).await.map_err(failed)?)
    };
    let count = match range {
        Some((a, b)) => b - a + 1,
        None => len,
    };
    let body = match stream {
        Some(s) => Body::from_stream(s.bytes),
        None => Body::empty(),
    };
    let mut r = (status, fixed, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, count.into());
    if let Some((a, b)) = range {
        if let Ok(v) = format!("bytes {a}-{b}/{len}").parse() {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Some(Ok((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
