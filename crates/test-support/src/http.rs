//! A tiny HTTP/1.1 file server on 127.0.0.1 for download tests: `GET` with optional
//! `Range: bytes=N-`, redirects, a log of the requests it saw, and switches to misbehave (cut a
//! body off, ignore ranges). One thread per connection, `Connection: close` on every answer.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub path: String,
    /// The `Range` header, if any (e.g. `bytes=100-`).
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    seen: Vec<SeenRequest>,
    /// Path → send only this many body bytes of the next answer, then close the connection.
    cut_next: HashMap<String, usize>,
    /// Path → `302 Found` with this `Location` (as GitHub sends Git-LFS files elsewhere).
    redirects: HashMap<String, String>,
    ignore_range: bool,
}

/// Serves `files` (URL path → bytes) until dropped or [`FileServer::stop`]ped.
pub struct FileServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stopping) = (state.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let state = state.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, &state);
                        });
                    }
                }
            })
        };
        FileServer { addr, state, stopping, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` at `path` (e.g. `/models/resnet18-v1-7.onnx`).
    pub fn add(&self, path: &str, bytes: Vec<u8>) {
        self.state.lock().unwrap().files.insert(path.to_string(), bytes);
    }

    /// Answers requests for `path` with `302 Found` to `target` (a path on this server).
    pub fn redirect(&self, path: &str, target: &str) {
        self.state.lock().unwrap().redirects.insert(path.to_string(), format!("{}{target}", self.url()));
    }

    /// The next answer for `path` stops after `bytes` body bytes and closes the connection.
    pub fn cut_next(&self, path: &str, bytes: usize) {
        self.state.lock().unwrap().cut_next.insert(path.to_string(), bytes);
    }

    /// Answer every request with the whole file (`200`), as servers without range support do.
    pub fn ignore_range(&self, ignore: bool) {
        self.state.lock().unwrap().ignore_range = ignore;
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Stops listening: later connections are refused.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr); // wake the accept loop
            let _ = thread.join();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());

    let (body, cut, ignore_range, redirect) = {
        let mut s = state.lock().unwrap();
        s.seen.push(SeenRequest { path: path.clone(), range: range.clone() });
        let cut = s.cut_next.remove(&path);
        (s.files.get(&path).cloned(), cut, s.ignore_range, s.redirects.get(&path).cloned())
    };
    let mut out = stream;
    if let Some(location) = redirect {
        let head =
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return out.write_all(head.as_bytes());
    }
    let Some(body) = body.filter(|_| method == "GET") else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) if !ignore_range => r.trim_end_matches('-').parse::<usize>().ok(),
        _ => None,
    };
    let (status, slice, extra) = match start {
        Some(s) if s >= body.len() => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                body.len()
            );
            return out.write_all(head.as_bytes());
        }
        Some(s) => (
            "206 Partial Content",
            &body[s..],
            format!("Content-Range: bytes {s}-{}/{}\r\n", body.len() - 1, body.len()),
        ),
        None => ("200 OK", &body[..], String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
        slice.len()
    );
    out.write_all(head.as_bytes())?;
    match cut {
        Some(n) => {
            out.write_all(&slice[..n.min(slice.len())])?;
            out.flush()?;
            out.shutdown(std::net::Shutdown::Both)
        }
        None => out.write_all(slice),
    }
}
