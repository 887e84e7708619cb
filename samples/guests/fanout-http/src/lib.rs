//! `fanout-http`: an HTTP function that calls a backend. For each request it
//! sends `GET $BACKEND_URL` with outgoing `wasi:http` and answers 200 with
//! `backend STATUS: BODY`, or 502 with `backend call failed: ERROR` when the
//! host refuses the call (the address is not granted) or the call fails.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wstd::http::{Body, Error, Request, Response, StatusCode, Uri};
use wstd::io::{AsyncInputStream, AsyncPollable, AsyncRead as _};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let Ok(url) = std::env::var("BACKEND_URL") else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fanout-http: BACKEND_URL is not set (for example http://10.43.0.20/)\n".to_owned(),
        );
    };
    match call(&url).await {
        Ok((status, body)) => reply(StatusCode::OK, format!("backend {status}: {body}")),
        Err(e) => {
            eprintln!("fanout-http: GET {url}: {e:#}");
            reply(
                StatusCode::BAD_GATEWAY,
                format!("backend call failed: GET {url}: {e:#}\n"),
            )
        }
    }
}

/// `GET url` through outgoing `wasi:http`. The request's body (empty) is
/// finished before the request is handed to the host. wstd's `Client::send`
/// writes the body only after handing the request over, while the response
/// may already be back; the host may then have closed the body stream, and
/// a call that succeeded failed with "connection reset".
async fn call(url: &str) -> Result<(u16, String), Error> {
    let uri: Uri = url.parse()?;
    let request = OutgoingRequest::new(Fields::new());
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    let set = [
        request.set_method(&Method::Get),
        request.set_scheme(Some(&scheme)),
        request.set_authority(uri.authority().map(|a| a.as_str())),
        request.set_path_with_query(uri.path_and_query().map(|p| p.as_str())),
    ];
    if set.iter().any(Result::is_err) {
        return Err(Error::msg(format!("{url} is not a request the host takes")));
    }
    let body = request.body().map_err(|()| Error::msg("no request body"))?;
    OutgoingBody::finish(body, None)?;
    let pending = outgoing_handler::handle(request, None)?;
    AsyncPollable::new(pending.subscribe()).wait_for().await;
    let response = pending
        .get()
        .ok_or_else(|| Error::msg("the response is not ready"))?
        .map_err(|()| Error::msg("the response was taken twice"))??;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| Error::msg("the response body was taken twice"))?;
    let stream = incoming
        .stream()
        .map_err(|()| Error::msg("the response body stream was taken twice"))?;
    let mut bytes = Vec::new();
    AsyncInputStream::new(stream).read_to_end(&mut bytes).await?;
    // The stream (a child of the body) is dropped by now; then the body.
    drop(incoming);
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn reply(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(body.into())?)
}
