//! The registry against a loopback HTTP server that serves files under the zoo's names, with
//! a test manifest of their hashes: download, progress, atomic rename, SHA-256 rejection,
//! resumption of cut-off downloads, cache reuse without network, offline mode, mirrors.

use std::fs;
use std::path::{Path, PathBuf};

use resnet_test_support::http::{FileServer, SeenRequest};
use resnet_zoo::registry::{sha256_file, CacheState, DownloadEvent, Registry, RegistryError, ZooModel};

const FILE: &str = "resnet18-v1-7.onnx";
const PATH: &str = "/zoo/resnet18-v1-7.onnx";

/// Deterministic bytes, several download buffers long.
fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    fs::write(&p, bytes).unwrap();
    sha256_file(&p).unwrap()
}

fn entry(bytes: &[u8]) -> ZooModel {
    ZooModel { name: "resnet18-v1".into(), file_name: FILE.into(), bytes: bytes.len() as u64, sha256: sha256(bytes) }
}

struct Setup {
    server: FileServer,
    cache: tempfile::TempDir,
    bytes: Vec<u8>,
}

impl Setup {
    fn new() -> Setup {
        let server = FileServer::start();
        let bytes = payload(700_000, 1);
        server.add(PATH, bytes.clone());
        Setup { server, cache: tempfile::tempdir().unwrap(), bytes }
    }

    fn registry(&self) -> Registry {
        Registry::with_entries(vec![entry(&self.bytes)], self.cache.path())
            .with_base_url(format!("{}/zoo", self.server.url()))
    }

    fn final_path(&self) -> PathBuf {
        self.cache.path().join(FILE)
    }

    fn part_path(&self) -> PathBuf {
        self.cache.path().join(format!("{FILE}.part"))
    }
}

/// What a fetch reported, in order, with paths and URLs dropped.
#[derive(Debug, PartialEq)]
enum Seen {
    Started { resume_from: u64 },
    Progress(u64),
    Retrying(u64),
    Verified,
}

fn fetch(registry: &Registry, watch: Option<(&Path, &Path)>) -> (Result<PathBuf, RegistryError>, Vec<Seen>) {
    let mut seen = Vec::new();
    let result = registry.fetch("resnet18-v1", &mut |e| {
        if let (Some((final_path, part)), DownloadEvent::Progress { .. }) = (watch, &e) {
            assert!(!final_path.exists(), "the final file appeared before verification");
            assert!(part.exists(), "progress without a .part file");
        }
        seen.push(match e {
            DownloadEvent::Started { resume_from, .. } => Seen::Started { resume_from },
            DownloadEvent::Progress { downloaded, .. } => Seen::Progress(downloaded),
            DownloadEvent::Retrying { downloaded, .. } => Seen::Retrying(downloaded),
            DownloadEvent::Verified { .. } => Seen::Verified,
        })
    });
    (result, seen)
}

fn progress_is_monotonic_and_ends_at(seen: &[Seen], total: u64) {
    let values: Vec<u64> =
        seen.iter().filter_map(|s| if let Seen::Progress(n) = s { Some(*n) } else { None }).collect();
    assert!(values.len() > 1, "expected several progress reports, got {values:?}");
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    assert_eq!(*values.last().unwrap(), total);
}

#[test]
fn download_reports_progress_verifies_and_renames_only_after_verification() {
    let s = Setup::new();
    let (result, seen) = fetch(&s.registry(), Some((&s.final_path(), &s.part_path())));
    let path = result.unwrap();
    assert_eq!(path, s.final_path());
    assert_eq!(fs::read(&path).unwrap(), s.bytes);
    assert!(!s.part_path().exists());
    assert_eq!(seen.first(), Some(&Seen::Started { resume_from: 0 }));
    assert_eq!(seen.last(), Some(&Seen::Verified));
    progress_is_monotonic_and_ends_at(&seen, s.bytes.len() as u64);
    assert_eq!(s.server.seen(), [SeenRequest { path: PATH.into(), range: None }]);
    assert_eq!(s.registry().cache_state(&s.registry().models()[0]), CacheState::Verified);
}

#[test]
fn sha256_mismatch_is_rejected_and_the_bad_file_removed() {
    let s = Setup::new();
    let mut wrong = entry(&s.bytes);
    wrong.sha256 = sha256(b"something else");
    let registry =
        Registry::with_entries(vec![wrong.clone()], s.cache.path()).with_base_url(format!("{}/zoo", s.server.url()));
    let (result, seen) = fetch(&registry, Some((&s.final_path(), &s.part_path())));
    let err = result.unwrap_err();
    assert!(matches!(err, RegistryError::ChecksumMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&wrong.sha256) && msg.contains(&sha256(&s.bytes)), "{msg}");
    assert!(msg.contains("deleted"), "{msg}");
    assert!(!seen.contains(&Seen::Verified));
    assert!(!s.final_path().exists() && !s.part_path().exists());
    assert_eq!(fs::read_dir(s.cache.path()).unwrap().count(), 0, "nothing left in the cache");
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let s = Setup::new();
    s.server.cut_next(PATH, 300_000);
    let (result, seen) = fetch(&s.registry(), Some((&s.final_path(), &s.part_path())));
    assert_eq!(fs::read(result.unwrap()).unwrap(), s.bytes);
    assert_eq!(
        s.server.seen(),
        [
            SeenRequest { path: PATH.into(), range: None },
            SeenRequest { path: PATH.into(), range: Some("bytes=300000-".into()) }
        ]
    );
    assert!(seen.contains(&Seen::Retrying(300_000)), "{seen:?}");
    assert!(seen.contains(&Seen::Started { resume_from: 300_000 }), "{seen:?}");
    progress_is_monotonic_and_ends_at(&seen, s.bytes.len() as u64);
}

#[test]
fn a_part_file_left_by_an_earlier_run_is_continued() {
    let s = Setup::new();
    fs::write(s.part_path(), &s.bytes[..123_456]).unwrap();
    let (result, seen) = fetch(&s.registry(), None);
    assert_eq!(fs::read(result.unwrap()).unwrap(), s.bytes);
    assert_eq!(s.server.seen(), [SeenRequest { path: PATH.into(), range: Some("bytes=123456-".into()) }]);
    assert_eq!(seen[0], Seen::Started { resume_from: 123_456 });
}

#[test]
fn a_server_that_ignores_ranges_gets_the_file_rewritten_from_zero() {
    let s = Setup::new();
    s.server.ignore_range(true);
    // A stale part with wrong bytes: if it were appended to, the hash would not match.
    fs::write(s.part_path(), vec![0xAB; 1000]).unwrap();
    let (result, seen) = fetch(&s.registry(), None);
    assert_eq!(fs::read(result.unwrap()).unwrap(), s.bytes);
    assert_eq!(seen[0], Seen::Started { resume_from: 0 });
}

#[test]
fn the_cache_is_reused_without_network() {
    let mut s = Setup::new();
    let first = fetch(&s.registry(), None).0.unwrap();
    s.server.stop();
    let (again, seen) = fetch(&s.registry(), None);
    assert_eq!(again.unwrap(), first);
    assert!(seen.is_empty(), "no download events for a cached file: {seen:?}");
    let offline = s.registry().with_offline(true);
    assert_eq!(fetch(&offline, None).0.unwrap(), first);
    assert_eq!(offline.cached("resnet18-v1").unwrap(), Some(first));
}

#[test]
fn offline_mode_never_downloads_and_says_what_to_do() {
    let s = Setup::new();
    let registry = s.registry().with_offline(true);
    let err = fetch(&registry, None).0.unwrap_err();
    assert!(matches!(err, RegistryError::Offline { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "resnet18-v1",
        "not in the cache",
        "resnet models pull resnet18-v1",
        FILE,
        &s.cache.path().display().to_string(),
        &format!("{}/zoo/{FILE}", s.server.url()),
        "RESNET_MODEL_BASE_URL",
    ] {
        assert!(msg.contains(needle), "'{needle}' not in: {msg}");
    }
    assert!(!msg.contains('\n'));
    assert!(s.server.seen().is_empty(), "offline mode made a request");
}

#[test]
fn a_corrupt_cached_file_is_never_used() {
    let s = Setup::new();
    fs::write(s.final_path(), vec![0u8; s.bytes.len()]).unwrap(); // right size, wrong bytes
    assert_eq!(s.registry().cache_state(&s.registry().models()[0]), CacheState::Unchecked);
    let err = fetch(&s.registry().with_offline(true), None).0.unwrap_err().to_string();
    assert!(err.contains("sha256") && err.contains("deleted"), "{err}");
    assert!(!s.final_path().exists());

    fs::write(s.final_path(), &s.bytes[..1000]).unwrap(); // wrong size: replaced by a download
    assert_eq!(fs::read(fetch(&s.registry(), None).0.unwrap()).unwrap(), s.bytes);
}

#[test]
fn a_file_copied_into_the_cache_by_hand_is_hashed_once_and_used() {
    let s = Setup::new();
    fs::write(s.final_path(), &s.bytes).unwrap();
    let registry = s.registry().with_offline(true);
    assert_eq!(registry.cached("resnet18-v1").unwrap(), Some(s.final_path()));
    assert_eq!(registry.cache_state(&registry.models()[0]), CacheState::Verified);
}

#[test]
fn the_base_url_picks_the_mirror_and_a_trailing_slash_is_fine() {
    let s = Setup::new();
    s.server.add("/mirror/resnet18-v1-7.onnx", s.bytes.clone());
    let registry = s.registry().with_base_url(format!("{}/mirror/", s.server.url()));
    fetch(&registry, None).0.unwrap();
    assert_eq!(s.server.seen(), [SeenRequest { path: "/mirror/resnet18-v1-7.onnx".into(), range: None }]);
}

#[test]
fn a_redirected_download_keeps_its_range_when_resumed() {
    // github.com/onnx/models/raw/… answers with a redirect to the Git-LFS host.
    let s = Setup::new();
    s.server.redirect("/raw/resnet18-v1-7.onnx", PATH);
    s.server.cut_next(PATH, 250_000);
    let registry = s.registry().with_base_url(format!("{}/raw", s.server.url()));
    assert_eq!(fs::read(fetch(&registry, None).0.unwrap()).unwrap(), s.bytes);
    let ranges: Vec<Option<String>> = s.server.seen().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [None, None, Some("bytes=250000-".into()), Some("bytes=250000-".into())]);
}

#[test]
fn http_errors_and_unknown_names_are_one_line_errors() {
    let s = Setup::new();
    let registry = s.registry().with_base_url(format!("{}/nowhere", s.server.url()));
    let err = fetch(&registry, None).0.unwrap_err();
    assert!(matches!(err, RegistryError::HttpStatus { status: 404, .. }), "{err:?}");
    assert!(!s.part_path().exists());
    let err = s.registry().fetch("resnet19-v1", &mut |_| {}).unwrap_err().to_string();
    assert_eq!(err, "unknown model 'resnet19-v1'; the zoo's models are: resnet18-v1");
}

#[test]
fn identify_names_the_model_a_file_is() {
    let s = Setup::new();
    let registry = s.registry();
    let file = s.cache.path().join("some-name.onnx");
    fs::write(&file, &s.bytes).unwrap();
    let found = registry.identify(&file).unwrap();
    assert_eq!(found.model.map(|m| m.name.as_str()), Some("resnet18-v1"));
    assert_eq!(found.bytes, s.bytes.len() as u64);
    fs::write(&file, b"not a model").unwrap();
    assert!(registry.identify(&file).unwrap().model.is_none());
}
