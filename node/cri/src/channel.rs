//! The Kubernetes channel protocol of `kubectl exec` over a WebSocket
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`): every binary frame starts
//! with the number of its stream, and the exit is a `Status` on the error
//! stream.
//!
//! Streams: [`STDIN`] (client to server), [`STDOUT`], [`STDERR`], [`ERROR`]
//! (the final Status, as JSON) and [`RESIZE`] (terminal size JSON, client to
//! server). In v5 a client frame `[CLOSE, id]` closes stream `id`: after
//! `[255, 0]` the command reads end-of-file on stdin.

/// The subprotocol with stream close (`[255, id]`), preferred.
pub const V5: &str = "v5.channel.k8s.io";
/// The subprotocol without stream close.
pub const V4: &str = "v4.channel.k8s.io";
/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

/// Stdin, client to server.
pub const STDIN: u8 = 0;
/// Stdout, server to client (stderr too with a TTY).
pub const STDOUT: u8 = 1;
/// Stderr, server to client.
pub const STDERR: u8 = 2;
/// The final Status of the command, server to client.
pub const ERROR: u8 = 3;
/// Terminal resizes, client to server (`{"Width":W,"Height":H}`).
pub const RESIZE: u8 = 4;
/// The v5 close signal: `[CLOSE, id]` closes stream `id`.
pub const CLOSE: u8 = 255;

/// One frame's payload: `stream` then `data`.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 1);
    f.push(stream);
    f.extend_from_slice(data);
    f
}

/// A frame from the client, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// Bytes for the command's stdin.
    Stdin(&'a [u8]),
    /// A terminal resize (its JSON; ignored by a Wasm command).
    Resize(&'a [u8]),
    /// The client closed stream `id` (v5 only).
    Close(u8),
    /// An empty frame, or one for a stream a client does not write.
    Other,
}

/// Decodes a binary frame from the client; `close` says whether the
/// protocol has the v5 close signal.
pub fn decode(payload: &[u8], close: bool) -> ClientFrame<'_> {
    match payload {
        [STDIN, data @ ..] => ClientFrame::Stdin(data),
        [RESIZE, data @ ..] => ClientFrame::Resize(data),
        [CLOSE, id, ..] if close => ClientFrame::Close(*id),
        _ => ClientFrame::Other,
    }
}

/// The Status sent on [`ERROR`] when the command exits with `code`: Success
/// for 0, else the `NonZeroExitCode` Failure kubectl turns into its exit code.
pub fn exit_status(code: i32) -> Vec<u8> {
    let status = if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    status.to_string().into_bytes()
}

/// The Status sent on [`ERROR`] when the command could not run at all.
pub fn failure_status(message: &str) -> Vec<u8> {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn a_frame_is_the_stream_then_the_bytes() {
        assert_eq!(frame(STDOUT, b"hi"), b"\x01hi");
        assert_eq!(frame(ERROR, b""), [3]);
    }

    #[test]
    fn client_frames_decode_by_their_first_byte() {
        assert_eq!(decode(b"\x00abc", true), ClientFrame::Stdin(b"abc"));
        assert_eq!(decode(b"\x00", true), ClientFrame::Stdin(b""));
        assert_eq!(
            decode(br#"{"Width":80,"Height":24}"#.as_slice(), true),
            ClientFrame::Other
        );
        assert_eq!(
            decode(b"\x04{\"Width\":80}", true),
            ClientFrame::Resize(b"{\"Width\":80}")
        );
        assert_eq!(decode(&[255, 0], true), ClientFrame::Close(0));
        // v4 has no close signal.
        assert_eq!(decode(&[255, 0], false), ClientFrame::Other);
        assert_eq!(decode(&[], true), ClientFrame::Other);
        assert_eq!(decode(b"\x01out", true), ClientFrame::Other);
    }

    #[test]
    fn exit_zero_is_success() {
        assert_eq!(
            json(&exit_status(0)),
            serde_json::json!({"metadata": {}, "status": "Success"})
        );
    }

    #[test]
    fn a_non_zero_exit_carries_its_code_as_kubectl_reads_it() {
        assert_eq!(
            json(&exit_status(3)),
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": "command terminated with non-zero exit code: 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            })
        );
    }

    #[test]
    fn a_failure_to_start_says_why() {
        let s = json(&failure_status("container abc is not running"));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["message"], "container abc is not running");
        assert_eq!(s["code"], 500);
    }
}
