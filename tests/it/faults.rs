//! Hostile and broken subscribers. Each case: the attempt is recorded as
//! failed with an error that says what happened, it is retried on schedule,
//! and a healthy subscription on the same daemon gets 20 events within a few
//! seconds meanwhile. The hostile endpoints are raw TCP servers in the test.

use crate::harness::tally::{TallyReceiver, SECRET};
use crate::harness::{sub_to, wait_until, Daemon};
use hookd::api;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The retry schedule every case runs with: two quick retries, then a long wait.
const SCHEDULE: [&str; 3] = ["400ms", "400ms", "1h"];
const RETRY: Duration = Duration::from_millis(400);

/// What a hostile endpoint does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Accepts, reads nothing, answers nothing.
    Hang,
    /// Sends a 500 status and headers, then drips the body a byte at a time, forever.
    EndlessBody,
    /// Sends a 500 with a body of `n` bytes as fast as it can.
    HugeBody(usize),
    /// Sends half a status line, then resets the connection.
    ResetMidResponse,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers 302 to `Location`.
    Redirect(String),
    /// Answers 200, but only after this long.
    Slow(Duration),
}

/// A raw TCP endpoint behaving badly; counts the connections it accepted.
struct Hostile {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Hostile {
    async fn start(behaviour: Behaviour) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(misbehave(stream, behaviour.clone()));
            }
        });
        Hostile { addr, accepted }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// Reads up to the end of the request head (the body does not matter).
async fn read_head(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 1 << 20 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn misbehave(mut stream: TcpStream, behaviour: Behaviour) {
    match behaviour {
        Behaviour::Hang => {
            std::future::pending::<()>().await;
        }
        Behaviour::EndlessBody => {
            read_head(&mut stream).await;
            let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100000000\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while stream.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Behaviour::HugeBody(n) => {
            read_head(&mut stream).await;
            let head = format!("HTTP/1.1 500 Internal Server Error\r\ncontent-length: {n}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'z'; 64 * 1024];
            let mut sent = 0;
            while sent < n && stream.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
        }
        Behaviour::ResetMidResponse => {
            read_head(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 O").await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Linger 0: close sends RST, not FIN (and never blocks, the reason for the deprecation).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Behaviour::Garbage => {
            read_head(&mut stream).await;
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe not http at all\r\n\r\n")
                .await;
        }
        Behaviour::Redirect(location) => {
            read_head(&mut stream).await;
            let answer = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
        Behaviour::Slow(delay) => {
            read_head(&mut stream).await;
            tokio::time::sleep(delay).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    }
}

/// A daemon with the hostile subscription and a healthy one, after the
/// hostile delivery has been tried twice.
struct Outcome {
    daemon: Daemon,
    healthy: TallyReceiver,
    delivery: api::Delivery,
}

/// Posts one event to `url` and 20 to a healthy receiver; checks the healthy
/// ones arrive within a few seconds, and that the hostile delivery fails twice,
/// on schedule, with an error containing one of `expect`.
async fn against(url: String, timeout: &str, expect: &[&str]) -> Outcome {
    let healthy = TallyReceiver::start().await;
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", SCHEDULE.to_vec())
        .set("delivery", "timeout", timeout)
        .set("log", "level", "hookd=info")
        .start()
        .await;
    let mut hostile = sub_to(url.clone());
    hostile.events = vec!["hostile.*".into()];
    daemon.add_sub(hostile).await;
    let mut fine = sub_to(healthy.url("/healthy"));
    fine.events = vec!["healthy.*".into()];
    fine.secret = Some(SECRET.into());
    daemon.add_sub(fine).await;

    let id = daemon
        .post_new(&json!({"type": "hostile.test", "data": {"to": url}}))
        .await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            daemon
                .post_new(&json!({"type": "healthy.test", "data": {"n": n}}))
                .await,
        );
    }
    healthy
        .wait_delivered("/healthy", &ids, Duration::from_secs(5))
        .await;
    let healthy_took = started.elapsed();
    assert!(
        healthy_took < Duration::from_secs(3),
        "the healthy subscription took {healthy_took:?} for 20 events next to {url}"
    );

    let event = daemon.event(&id).await;
    let delivery_id = event.deliveries[0].id.clone();
    let delivery = wait_until(
        "the hostile delivery tried twice",
        Duration::from_secs(20),
        || async {
            let d = daemon.delivery(&delivery_id).await;
            match d.attempt_log.as_ref().map_or(0, |l| l.len()) {
                n if n >= 2 => Ok(d),
                n => Err(format!("{n} attempts: {d:?}")),
            }
        },
    )
    .await;
    assert_eq!(
        delivery.status, "failed",
        "retrying, not given up: {delivery:?}"
    );
    let log = delivery.attempt_log.clone().unwrap();
    for attempt in &log {
        let error = attempt.error.clone().unwrap_or_default().to_lowercase();
        assert!(
            expect.iter().any(|e| error.contains(e)),
            "attempt {} to {url}: error {:?} should say one of {expect:?}",
            attempt.no,
            attempt.error
        );
    }
    let at = |i: usize| humantime::parse_rfc3339(&log[i].at).expect("an RFC 3339 time");
    let gap = at(1).duration_since(at(0)).unwrap();
    let waited = gap.saturating_sub(Duration::from_millis(log[0].latency_ms));
    assert!(
        waited >= RETRY.mul_f64(0.85) && waited < RETRY + Duration::from_secs(2),
        "the retry came {waited:?} after the first attempt ended; the schedule says {RETRY:?}"
    );
    println!(
        "faults: {url}: {:?}; retried after {waited:?}; the healthy subscription got 20 in {healthy_took:?}",
        log[0].error.as_deref().unwrap_or("")
    );
    Outcome {
        daemon,
        healthy,
        delivery,
    }
}

#[tokio::test]
async fn connection_refused() {
    // A port nothing listens on any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    against(format!("http://{addr}/hook"), "2s", &["connection refused"]).await;
}

#[tokio::test]
async fn accept_then_hang_times_out() {
    let hostile = Hostile::start(Behaviour::Hang).await;
    against(hostile.url(), "1s", &["timed out"]).await;
}

#[tokio::test]
async fn headers_then_a_body_that_never_ends_times_out() {
    let hostile = Hostile::start(Behaviour::EndlessBody).await;
    let outcome = against(hostile.url(), "1s", &["timed out"]).await;
    let log = outcome.delivery.attempt_log.unwrap();
    assert_eq!(
        log[0].status,
        Some(500),
        "the status that did arrive is kept"
    );
}

#[tokio::test]
async fn a_huge_response_body_is_read_only_up_to_the_excerpt() {
    let huge = 64 << 20;
    let hostile = Hostile::start(Behaviour::HugeBody(huge)).await;
    let outcome = against(hostile.url(), "5s", &["http 500"]).await;
    let log = outcome.delivery.attempt_log.unwrap();
    assert!(
        log.iter().all(|a| a.response.len() <= 4096),
        "excerpts capped at delivery.response_excerpt: {:?}",
        log.iter().map(|a| a.response.len()).collect::<Vec<_>>()
    );
    let (rss, peak) = rss_kib(outcome.daemon.pid());
    // Reading either answer whole would have taken 64 MiB at once.
    assert!(
        peak < 48 << 10,
        "the daemon's peak RSS is {peak} KiB (now {rss} KiB) after two 64 MiB answers"
    );
    println!("faults: RSS {rss} KiB, peak {peak} KiB after two 64 MiB answers");
}

#[tokio::test]
async fn a_reset_mid_response_is_a_failed_attempt() {
    let hostile = Hostile::start(Behaviour::ResetMidResponse).await;
    against(
        hostile.url(),
        "2s",
        &["reset", "closed", "incomplete", "protocol"],
    )
    .await;
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_protocol_error() {
    let hostile = Hostile::start(Behaviour::Garbage).await;
    against(hostile.url(), "2s", &["protocol error"]).await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let target = TallyReceiver::start().await;
    let hostile = Hostile::start(Behaviour::Redirect(target.url("/moved"))).await;
    let outcome = against(hostile.url(), "2s", &["http 302"]).await;
    assert_eq!(outcome.delivery.attempt_log.unwrap()[0].status, Some(302));
    assert_eq!(
        target.tally("/moved").requests,
        0,
        "the Location target got nothing"
    );
    assert_eq!(outcome.healthy.tally("/moved").requests, 0);
}

#[tokio::test]
async fn an_untrusted_tls_certificate_is_refused() {
    let (addr, handshakes) = self_signed_tls_server().await;
    against(
        format!("https://localhost:{}/hook", addr.port()),
        "2s",
        &["certificate", "unknownissuer"],
    )
    .await;
    assert!(
        handshakes.load(Ordering::SeqCst) >= 2,
        "the TLS server saw the handshakes"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_error() {
    // `.invalid` never resolves (RFC 6761); a short timeout in case a resolver hangs.
    against(
        "http://no-such-host.invalid/hook".into(),
        "2s",
        &["dns", "timed out"],
    )
    .await;
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_fails_even_if_it_answers_200_later() {
    let hostile = Hostile::start(Behaviour::Slow(Duration::from_secs(3))).await;
    let outcome = against(hostile.url(), "1s", &["timed out"]).await;
    assert!(hostile.accepted.load(Ordering::SeqCst) >= 2);
    assert_eq!(outcome.delivery.attempt_log.unwrap()[0].status, None);
}

/// The daemon's resident set now (VmRSS) and at its peak (VmHWM), in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A TLS server with a fresh self-signed certificate for `localhost`, which
/// no trust store knows; counts the handshakes it was offered.
async fn self_signed_tls_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The client gives up on the certificate; nothing to serve.
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    (addr, handshakes)
}
