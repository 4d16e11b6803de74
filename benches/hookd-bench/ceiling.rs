//! The ceiling: a minimal hyper server that reads the body and answers 202,
//! run as a separate process (this same executable in a server mode) so
//! that it competes for the cores exactly as hookd does.

use crate::Res;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the server-mode process.
pub const SERVER_ENV: &str = "HOOKD_BENCH_CEILING_SERVER";

/// The server mode never outlives this, even if its parent is gone.
const MAX_LIFETIME: Duration = Duration::from_secs(900);

/// Server mode: prints the port, serves until stdin closes.
pub fn serve_main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    // Stop when the parent closes our stdin (or dies), or after MAX_LIFETIME.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(MAX_LIFETIME);
        std::process::exit(0);
    });
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        println!("{}", listener.local_addr().expect("bound").port());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(accept))
                    .await;
            });
        }
    })
}

async fn accept(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let answer = format!(r#"{{"id":"x","deliveries":0,"bytes":{}}}"#, body.len());
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer)))
        .expect("static response"))
}

/// A running ceiling server process; stopped when dropped.
pub struct CeilingServer {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
}

impl CeilingServer {
    pub fn start() -> Res<CeilingServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(SERVER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("the ceiling server printed {line:?}, not a port"))?;
        Ok(CeilingServer {
            child,
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CeilingServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
