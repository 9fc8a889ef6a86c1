//! One file over HTTP(S) into a `.part` file, resuming with `Range: bytes=N-` where an earlier
//! attempt stopped. Knows nothing about hashes: the registry verifies the finished part.
//!
//! Resumption is trusted only when the server says so: `206 Partial Content` with a
//! `Content-Range` starting at our offset appends; `200 OK` (a server or redirect that ignores
//! `Range`) rewrites the part from byte 0; `416` drops the part and starts over. A connection
//! that breaks after delivering bytes is retried at once from the new offset, a few times.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use super::error::RegistryError;

/// Attempts per download; only attempts that delivered bytes (or were told to restart) are
/// retried, so a dead server fails fast.
const MAX_ATTEMPTS: u32 = 5;

/// What a download reports while it runs.
#[derive(Debug, Clone)]
pub enum DownloadEvent<'a> {
    /// The server answered; bytes `resume_from..total` are coming (`resume_from > 0`: resumed).
    Started { url: &'a str, total: u64, resume_from: u64 },
    /// `downloaded` of `total` bytes are in the `.part` file.
    Progress { downloaded: u64, total: u64 },
    /// The connection broke after `downloaded` bytes; a new request resumes from there.
    Retrying { downloaded: u64, error: String },
    /// The file passed its SHA-256 check and is now at `path`.
    Verified { path: &'a Path },
}

enum AttemptError {
    /// Worth another request (from the part's new length) if this one made progress.
    Broken {
        received: u64,
        detail: String,
    },
    /// Start again from byte 0.
    Restart,
    Fatal(RegistryError),
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("resnet-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Makes `part` hold the `total` bytes at `url` (resuming what it already holds).
pub(crate) fn download_to_part(
    url: &str,
    part: &Path,
    total: u64,
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<(), RegistryError> {
    let agent = agent();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > total {
            fs::remove_file(part).map_err(|e| RegistryError::io(part, e))?;
            have = 0;
        }
        if have == total && total > 0 {
            return Ok(()); // complete from an earlier run that stopped before verifying
        }
        match request(&agent, url, part, have, total, on_event) {
            Ok(()) => return Ok(()),
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Restart) if attempt < MAX_ATTEMPTS => {
                let _ = fs::remove_file(part);
            }
            Err(AttemptError::Broken { received, detail }) if received > 0 && attempt < MAX_ATTEMPTS => {
                let downloaded = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
                on_event(DownloadEvent::Retrying { downloaded, error: detail });
            }
            Err(AttemptError::Broken { detail, .. }) => {
                return Err(RegistryError::Network { url: url.to_string(), detail });
            }
            Err(AttemptError::Restart) => {
                return Err(RegistryError::Network {
                    url: url.to_string(),
                    detail: "the server refused every byte range".to_string(),
                });
            }
        }
    }
}

/// Parses the first byte of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

fn request(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    have: u64,
    total: u64,
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<(), AttemptError> {
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let response = req.call().map_err(|e| AttemptError::Broken { received: 0, detail: e.to_string() })?;
    let io_err = |e: std::io::Error| AttemptError::Fatal(RegistryError::io(part, e));
    let (mut file, start) = match response.status().as_u16() {
        206 if have > 0 => {
            let range = response.headers().get("content-range").and_then(|v| v.to_str().ok());
            if range.and_then(content_range_start) != Some(have) {
                // Not the bytes we asked for: the part cannot be continued.
                return Err(AttemptError::Restart);
            }
            (OpenOptions::new().append(true).open(part).map_err(io_err)?, have)
        }
        200 => (File::create(part).map_err(io_err)?, 0),
        416 => return Err(AttemptError::Restart),
        status => return Err(AttemptError::Fatal(RegistryError::HttpStatus { url: url.to_string(), status })),
    };
    on_event(DownloadEvent::Started { url, total, resume_from: start });

    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                file.flush().map_err(io_err)?;
                return Err(AttemptError::Broken { received: done - start, detail: e.to_string() });
            }
        };
        if n == 0 {
            break;
        }
        if done + n as u64 > total {
            drop(file);
            let _ = fs::remove_file(part);
            return Err(AttemptError::Fatal(RegistryError::SizeMismatch {
                url: url.to_string(),
                expected: total,
                actual: done + n as u64,
            }));
        }
        file.write_all(&buf[..n]).map_err(io_err)?;
        done += n as u64;
        on_event(DownloadEvent::Progress { downloaded: done, total });
    }
    file.flush().map_err(io_err)?;
    if done < total {
        return Err(AttemptError::Broken {
            received: done - start,
            detail: format!("the connection closed after {done} of {total} bytes"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_the_first_byte() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/1"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
