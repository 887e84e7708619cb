//! `fanout-http`: an HTTP function that calls a backend. For each request it
//! sends `GET $BACKEND_URL` with outgoing `wasi:http` and answers 200 with
//! `backend STATUS: BODY`, or 502 with `backend call failed: ERROR` when the
//! host refuses the call (the address is not granted) or the call fails.

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

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

async fn call(url: &str) -> Result<(u16, String), Error> {
    let request = Request::get(url).body(Body::empty())?;
    let mut response = Client::new().send(request).await?;
    let status = response.status().as_u16();
    let body = response.body_mut().str_contents().await?.to_owned();
    Ok((status, body))
}

fn reply(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(body.into())?)
}
