//! A fault-injecting HTTP proxy on 127.0.0.1 between the client and a real server: each request
//! in turn either passes through or meets the next fault of a schedule (429 with Retry-After, a
//! 500, a connection dropped before the answer, an answer too slow for the client's timeout, an
//! answer cut short). What passes through is forwarded byte for byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    TooManyRequests,
    ServerError,
    Drop,
    Slow(Duration),
    Truncated,
}

pub struct Proxy {
    pub url: String,
    pub faults_served: Arc<AtomicUsize>,
    pub passed: Arc<AtomicUsize>,
    /// The body of every request that reached the server, in the order it did.
    pub forwarded: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Starts a proxy to `upstream` (`host:port`) whose n-th request gets `schedule[n % len]`.
pub fn start(upstream: &str, schedule: Vec<Fault>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let faults_served = Arc::new(AtomicUsize::new(0));
    let passed = Arc::new(AtomicUsize::new(0));
    let schedule = Arc::new(Mutex::new(schedule));
    let forwarded = Arc::new(Mutex::new(Vec::new()));
    let counters = Counters { count, faults: faults_served.clone(), passed: passed.clone(), forwarded: forwarded.clone() };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (upstream, schedule, counters) = (upstream.clone(), schedule.clone(), counters.clone());
            std::thread::spawn(move || serve(stream, &upstream, &schedule, &counters));
        }
    });
    Proxy { url, faults_served, passed, forwarded }
}

#[derive(Clone)]
struct Counters {
    count: Arc<AtomicUsize>,
    faults: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
    forwarded: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Reads one HTTP/1.1 request (headers, and a body of Content-Length bytes): the whole request
/// to forward, and its body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        // Every answer closes its connection: one request per connection, simple to forward.
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    head.extend_from_slice(&body);
    Some((head, body))
}

fn serve(stream: TcpStream, upstream: &str, schedule: &Mutex<Vec<Fault>>, counters: &Counters) {
    let Counters { count, faults, passed, forwarded } = counters;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let Some((request, body)) = read_request(&mut reader) else { return };
    let n = count.fetch_add(1, Ordering::SeqCst);
    let fault = {
        let s = schedule.lock().unwrap();
        if s.is_empty() { Fault::Pass } else { s[n % s.len()] }
    };
    let mut out = stream;
    let answer = |status: &str, body: &str| format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 0\r\nConnection: close\r\n\r\n{body}", body.len());
    if fault != Fault::Pass {
        faults.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Fault::TooManyRequests => {
            let _ = out.write_all(answer("429 Too Many Requests", "{\"error\":\"slow down\"}").as_bytes());
        }
        Fault::ServerError => {
            let _ = out.write_all(answer("500 Internal Server Error", "{\"error\":\"boom\"}").as_bytes());
        }
        Fault::Drop => {}
        Fault::Slow(d) => {
            std::thread::sleep(d);
        }
        Fault::Pass | Fault::Truncated => {
            if !body.is_empty() {
                forwarded.lock().unwrap().push(body);
            }
            let mut up = TcpStream::connect(upstream).unwrap();
            up.write_all(&request).unwrap();
            let mut response = Vec::new();
            let _ = up.read_to_end(&mut response);
            if fault == Fault::Truncated {
                // Headers as sent (Content-Length too), then half the body: a connection cut mid-answer.
                let cut = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len() / 2, |h| h + 4 + (response.len() - h - 4) / 2);
                let _ = out.write_all(&response[..cut]);
            } else {
                passed.fetch_add(1, Ordering::SeqCst);
                let _ = out.write_all(&response);
            }
        }
    }
    let _ = out.flush();
}
