//! `resnet-loadgen` against a scripted loopback HTTP server: what it counts must be exactly what
//! the server answered (per status), bodies go out round-robin with the right content types, and
//! failures of the connection itself are reported as such.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// What the scripted server saw and answered.
#[derive(Default)]
struct Seen {
    /// (content type, body) of each request.
    requests: Vec<(String, Vec<u8>)>,
    /// Status code → how many times it was sent.
    answered: BTreeMap<String, u64>,
}

/// Answers request n (counting from 1) with 503 when n % 4 == 0, with a 200 that is not a
/// prediction list when n % 7 == 0, else with a 200 prediction list; 2 ms per request.
fn start_scripted_server() -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/predictions/m", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let seen_for_server = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (seen, counter) = (seen_for_server.clone(), counter.clone());
            std::thread::spawn(move || serve_connection(stream, &seen, &counter));
        }
    });
    (url, seen)
}

fn serve_connection(stream: TcpStream, seen: &Mutex<Seen>, counter: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        assert!(request_line.starts_with("POST /predictions/m "), "unexpected request: {request_line}");
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let (status, answer) = if n.is_multiple_of(4) {
            (503, r#"{"code": 503, "type": "ServiceUnavailableException", "message": "queue full"}"#)
        } else if n.is_multiple_of(7) {
            (200, r#"{"not": "a list"}"#)
        } else {
            (200, r#"[{"class": "n06874185 traffic light", "probability": 0.9}]"#)
        };
        {
            let mut seen = seen.lock().unwrap();
            seen.requests.push((content_type, body));
            *seen.answered.entry(status.to_string()).or_default() += 1;
        }
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(answer.as_bytes())).is_err() {
            return;
        }
    }
}

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resnet-loadgen")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn write_images(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let jpeg = b"\xff\xd8\xff\xe0 pretend jpeg".to_vec();
    let png = b"\x89PNG\r\n\x1a\n pretend png, a bit longer".to_vec();
    std::fs::write(dir.join("a.JPEG"), &jpeg).unwrap();
    std::fs::write(dir.join("b.png"), &png).unwrap();
    std::fs::write(dir.join("labels.tsv"), b"not an image").unwrap();
    (jpeg, png)
}

#[test]
fn counts_match_what_the_server_answered_and_bodies_go_round_robin() {
    let (url, seen) = start_scripted_server();
    let dir = tempfile::tempdir().unwrap();
    let (jpeg, png) = write_images(dir.path());
    let images = dir.path().to_str().unwrap();
    let (code, stdout, stderr) =
        loadgen(&["--url", &url, "--images", images, "--clients", "4", "--duration-s", "1", "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let seen = seen.lock().unwrap();

    let total = seen.requests.len() as u64;
    assert!(total >= 40, "only {total} requests in 1 s with 4 clients and a 2 ms server");
    assert_eq!(report["requests"], total);
    let answered_503 = seen.answered["503"];
    let invalid = (1..=total).filter(|n| n % 4 != 0 && n % 7 == 0).count() as u64;
    assert_eq!(report["errors"]["503"], answered_503);
    assert_eq!(report["errors"]["invalid-body"], invalid);
    assert_eq!(report["errors"].as_object().unwrap().len(), 2, "{}", report["errors"]);
    assert_eq!(report["ok"], total - answered_503 - invalid);

    let elapsed = report["elapsed_s"].as_f64().unwrap();
    assert!((1.0..3.0).contains(&elapsed), "elapsed {elapsed}");
    let rps = report["throughput_rps"].as_f64().unwrap();
    assert!((rps - report["ok"].as_f64().unwrap() / elapsed).abs() < 1e-9);
    let l = &report["latency_ms"];
    let (p50, p90, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p90"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(2.0 <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{l}");

    // Round-robin over the two images (the .tsv is skipped), each with its content type.
    let jpegs = seen.requests.iter().filter(|(ct, body)| ct == "image/jpeg" && *body == jpeg).count();
    let pngs = seen.requests.iter().filter(|(ct, body)| ct == "image/png" && *body == png).count();
    assert_eq!(jpegs + pngs, seen.requests.len(), "a request with another body or content type");
    assert!(jpegs == pngs || jpegs == pngs + 1, "not round-robin: {jpegs} jpeg, {pngs} png");
}

#[test]
fn text_report_and_fail_on_error() {
    let (url, _seen) = start_scripted_server();
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let images = dir.path().to_str().unwrap();
    let (code, stdout, stderr) =
        loadgen(&["--url", &url, "--images", images, "--clients", "2", "--duration-s", "0.3", "--fail-on-error"]);
    assert_eq!(code, 1, "every 4th answer is a 503, so --fail-on-error must fail; stderr: {stderr}");
    for field in ["requests", "errors", "503: ", "throughput", "req/s", "p50", "p90", "p99"] {
        assert!(stdout.contains(field), "no '{field}' in:\n{stdout}");
    }
}

#[test]
fn a_closed_port_is_a_transport_error_not_a_crash() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let url = format!("http://127.0.0.1:{port}/predictions/m");
    let (code, stdout, stderr) = loadgen(&[
        "--url",
        &url,
        "--images",
        dir.path().to_str().unwrap(),
        "--clients",
        "2",
        "--duration-s",
        "0.2",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], 0);
    assert!(report["errors"]["transport"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["requests"], report["errors"]["transport"]);
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = loadgen(&["--url", "http://127.0.0.1:9/x", "--images", empty.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with("error: no .jpg, .jpeg or .png files in"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let images = dir.path().to_str().unwrap();
    let (code, _, stderr) = loadgen(&["--url", "127.0.0.1:9/x", "--images", images]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--url must start with http://"), "{stderr}");
    let (code, _, stderr) = loadgen(&["--url", "http://127.0.0.1:9/x", "--images", images, "--duration-s", "0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--duration-s must be a positive"), "{stderr}");
}
