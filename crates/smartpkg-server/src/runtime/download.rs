//! `GET /runtime/v1/packages/{sha256}`: a package archive, addressed by its content. The URL
//! names the bytes for ever, so the answer is `immutable` and any CDN may keep it; it is
//! streamed from the blob's file (a range of it when asked), never read whole into memory.
//!
//! No credentials: the URL itself is learned only from an authenticated update check, and
//! only archives of packages are served — never templates or drafts, which share the blob
//! store.

use std::io::SeekFrom;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::Refused;
use crate::AppState;

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

fn known(state: &AppState, sha: &str) -> bool {
    state
        .runtime
        .archives
        .read()
        .map(|s| s.contains(sha))
        .unwrap_or(false)
}

pub async fn package(
    State(state): State<AppState>,
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
        if let Ok(mut s) = state.runtime.archives.write() {
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
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, fixed).into_response());
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match state.blobs.local_path(&sha) {
        Some(path) => {
            let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
                tracing::error!(error = %e, "runtime: an archive file cannot be opened");
                not_found()
            })?;
            let len = file.metadata().await.map_err(|_| not_found())?.len();
            let (status, first, last) = match range_header.and_then(|h| parse_range(h, len)) {
                None => (StatusCode::OK, 0, len.saturating_sub(1)),
                Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
                Some(Err(())) => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                    )
                        .into_response())
                }
            };
            let count = if len == 0 { 0 } else { last - first + 1 };
            file.seek(SeekFrom::Start(first))
                .await
                .map_err(|_| not_found())?;
            // 256 KiB reads: large enough for the loopback rate, small enough that many
            // downloads at once stay cheap.
            let stream = tokio_util::io::ReaderStream::with_capacity(file.take(count), 256 * 1024);
            let mut r = (status, fixed, Body::from_stream(stream)).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, count.into());
            if status == StatusCode::PARTIAL_CONTENT {
                if let Ok(v) = format!("bytes {first}-{last}/{len}").parse() {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            Ok(r)
        }
        // A bucket: read through the blob store (whole; see docs/runtime.md).
        None => {
            let bytes = state.blobs.get(&sha).await.map_err(|e| {
                tracing::error!(error = %e, "runtime: an archive cannot be read");
                not_found()
            })?;
            let len = bytes.len() as u64;
            match range_header.and_then(|h| parse_range(h, len)) {
                None => Ok((StatusCode::OK, fixed, bytes).into_response()),
                Some(Ok((a, b))) => {
                    let part = bytes[a as usize..=b as usize].to_vec();
                    Ok((
                        StatusCode::PARTIAL_CONTENT,
                        fixed,
                        [(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))],
                        part,
                    )
                        .into_response())
                }
                Some(Err(())) => Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                )
                    .into_response()),
            }
        }
    }
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
