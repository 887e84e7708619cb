//! `hello-http`: an HTTP function. Every request gets a fresh instance.
//!
//! - `GET /healthz`: 200 `ok`.
//! - `GET /slow?ms=N`: sleeps N milliseconds (at most 60 s), then answers
//!   `slept N ms` (for drain and concurrency tests).
//! - anything else: `hello from $POD_NAME (request N)`. N counts requests in
//!   `/state/count` when a writable `/state` is preopened (read, increment,
//!   write back); without it the count lives in the instance, so it is always
//!   1: each request sees a fresh instance.

use std::sync::atomic::{AtomicU64, Ordering};

use wstd::http::{Body, Error, Request, Response, StatusCode};
use wstd::time::Duration;

/// The count without `/state`: an instance-local counter.
static LOCAL: AtomicU64 = AtomicU64::new(0);

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    match path {
        "/healthz" => Ok(Response::new("ok".into())),
        "/slow" => slow(query).await,
        _ => {
            let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "an unnamed pod".to_owned());
            let n = match count() {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("hello-http: /state/count: {e}");
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot count requests in /state/count: {e}\n"),
                    );
                }
            };
            println!("hello-http: request {n}");
            Ok(Response::new(
                format!("hello from {pod} (request {n})\n").into(),
            ))
        }
    }
}

async fn slow(query: &str) -> Result<Response<Body>, Error> {
    let ms = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ms="))
        .map(str::parse::<u64>);
    match ms {
        Some(Ok(ms)) if ms <= 60_000 => {
            wstd::task::sleep(Duration::from_millis(ms)).await;
            Ok(Response::new(format!("slept {ms} ms\n").into()))
        }
        _ => text(
            StatusCode::BAD_REQUEST,
            "usage: /slow?ms=N with N from 0 to 60000\n".to_owned(),
        ),
    }
}

/// The next request number: from `/state/count` if `/state` exists, else
/// from the instance-local counter.
fn count() -> std::io::Result<u64> {
    let dir = std::path::Path::new("/state");
    if !dir.is_dir() {
        return Ok(LOCAL.fetch_add(1, Ordering::Relaxed) + 1);
    }
    let file = dir.join("count");
    let old = match std::fs::read_to_string(&file) {
        Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let n = old + 1;
    std::fs::write(&file, format!("{n}\n"))?;
    Ok(n)
}

fn text(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(body.into())?)
}
