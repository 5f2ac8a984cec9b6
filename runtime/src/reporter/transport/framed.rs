//! `TraceSegmentReportService/collect` with a whole batch framed into one request body.
//!
//! The call is a client stream of `SegmentObject`s. Sent through tonic's codec, every segment is
//! a stream item: encoded into its own frame, polled out of the body and written as its own
//! HTTP/2 DATA frame, a few hundred instructions each on the reporter's thread. The segments
//! arrive here framed already as gRPC's length-prefixed messages, one after another in one
//! buffer (`reporter::batch::Batch`), which is sent as one body: the same bytes on the wire
//! (gRPC framing does not depend on HTTP/2's), and as few DATA frames as the connection's frame
//! size allows.
//!
//! The reply is read as tonic reads it: a `grpc-status` in the headers (a trailers-only
//! answer) or the trailers, the HTTP status when neither has one, and one `Commands` message.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use skytrace_proto::v3::Commands;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower_service::Service;

const PATH: &str = "/skywalking.v3.TraceSegmentReportService/collect";

/// A body of one batch (framed: see `Batch`).
pub(crate) fn whole_body(batch: Bytes) -> tonic::body::Body {
    tonic::body::Body::new(http_body_util::Full::new(batch))
}

/// A body of what comes through `frames` (each a batch's frames, see `Batch`), ended when every
/// sender is gone. It is read as HTTP/2's flow control lets it go: a backend that stops
/// reading leaves the senders waiting, never a growing buffer.
pub(crate) fn streamed_body(frames: tokio::sync::mpsc::Receiver<Bytes>) -> tonic::body::Body {
    tonic::body::Body::new(Frames(frames))
}

/// A request body of the batches that come through a channel.
struct Frames(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|frames| frames.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Sends `body` ([`whole_body`] or [`streamed_body`]) on `channel` and reads the answer.
pub(crate) async fn collect(
    channel: Channel,
    body: tonic::body::Body,
    token: Option<&AsciiMetadataValue>,
    timeout: Duration,
) -> Result<Commands, Status> {
    send(channel, request(body, token, timeout)?).await
}

async fn send(
    mut channel: Channel,
    request: http::Request<tonic::body::Body>,
) -> Result<Commands, Status> {
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    read(response).await
}

/// The most bytes of a reply read, as tonic's default decoding limit: a backend answering with
/// more is refused, not buffered.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// The answer to a `collect` call.
async fn read(response: http::Response<tonic::body::Body>) -> Result<Commands, Status> {
    let http_status = response.status();
    if let Some(status) = Status::from_header_map(response.headers()) {
        // A trailers-only answer: no message follows.
        return match status.code() {
            Code::Ok => Ok(Commands::default()),
            _ => Err(status),
        };
    }
    let collected = http_body_util::Limited::new(response.into_body(), MAX_REPLY_BYTES)
        .collect()
        .await
        .map_err(Status::from_error)?;
    let trailers = collected.trailers().and_then(Status::from_header_map);
    match trailers {
        Some(status) if status.code() != Code::Ok => return Err(status),
        Some(_) => {}
        None => return Err(without_grpc_status(http_status)),
    }
    decode(&collected.to_bytes())
}

fn request(
    body: tonic::body::Body,
    token: Option<&AsciiMetadataValue>,
    timeout: Duration,
) -> Result<http::Request<tonic::body::Body>, Status> {
    // Headers from constants, not parsed per call (`Request::builder().header(..)` parsed
    // each name: 4 k instructions a call).
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = http::Uri::from_static(PATH);
    let headers = request.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    let timeout = http::HeaderValue::from_str(&grpc_timeout(timeout))
        .map_err(|e| Status::internal(e.to_string()))?;
    headers.insert(http::HeaderName::from_static("grpc-timeout"), timeout);
    if let Some(token) = token
        && let Ok(value) = http::HeaderValue::from_bytes(token.as_encoded_bytes())
    {
        headers.insert(http::HeaderName::from_static("authentication"), value);
    }
    Ok(request)
}

/// `grpc-timeout`: at most eight digits, in milliseconds (an hour and more in seconds). Written
/// digit by digit: `format!` cost ≈ 500 instructions a call.
fn grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_millis();
    let (value, unit) = if millis < 100_000_000 {
        (millis as u64, 'm')
    } else {
        (timeout.as_secs().min(99_999_999), 'S')
    };
    let mut digits = [0; crate::decimal::MAX_LEN];
    let mut text = String::with_capacity(9);
    let digits = crate::decimal::write(&mut digits, false, value);
    text.extend(digits.iter().map(|&d| char::from(d)));
    text.push(unit);
    text
}

/// An answer without `grpc-status`: what its HTTP status means, as gRPC maps it.
fn without_grpc_status(status: http::StatusCode) -> Status {
    let code = match status {
        http::StatusCode::BAD_REQUEST => Code::Internal,
        http::StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        http::StatusCode::FORBIDDEN => Code::PermissionDenied,
        http::StatusCode::NOT_FOUND => Code::Unimplemented,
        http::StatusCode::TOO_MANY_REQUESTS
        | http::StatusCode::BAD_GATEWAY
        | http::StatusCode::SERVICE_UNAVAILABLE
        | http::StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(
        code,
        format!("answered HTTP {status} without a grpc-status"),
    )
}

/// The reply's one `Commands` message (none: no commands).
fn decode(body: &[u8]) -> Result<Commands, Status> {
    let Some((&flag, rest)) = body.split_first() else {
        return Ok(Commands::default());
    };
    if flag != 0 {
        // No compression was offered (no `grpc-accept-encoding`).
        return Err(Status::internal(
            "the reply is compressed, which was not offered",
        ));
    }
    let (len, rest) = match rest.split_first_chunk::<4>() {
        Some((len, rest)) => (u32::from_be_bytes(*len) as usize, rest),
        None => return Err(Status::internal("the reply's frame is cut short")),
    };
    let message = rest
        .get(..len)
        .ok_or_else(|| Status::internal("the reply's message is cut short"))?;
    Commands::decode(message).map_err(|e| Status::internal(format!("the reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_is_read_or_refused_clearly() {
        let commands = Commands::default().encode_to_vec();
        let mut reply = vec![0];
        reply.extend_from_slice(&(commands.len() as u32).to_be_bytes());
        reply.extend_from_slice(&commands);
        assert_eq!(decode(&reply).unwrap(), Commands::default());
        assert_eq!(decode(&[]).unwrap(), Commands::default());
        assert_eq!(decode(&[0, 0, 0]).unwrap_err().code(), Code::Internal);
        assert_eq!(
            decode(&[0, 0, 0, 0, 9, 1]).unwrap_err().code(),
            Code::Internal
        );
        assert_eq!(decode(&[1, 0, 0, 0, 0]).unwrap_err().code(), Code::Internal);
    }

    fn reply(body: Vec<u8>, trailers: bool) -> http::Response<tonic::body::Body> {
        let mut frames = vec![Ok::<_, std::convert::Infallible>(http_body::Frame::data(
            Bytes::from(body),
        ))];
        if trailers {
            let mut map = http::HeaderMap::new();
            map.insert("grpc-status", http::HeaderValue::from_static("0"));
            frames.push(Ok(http_body::Frame::trailers(map)));
        }
        let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
        http::Response::new(tonic::body::Body::new(body))
    }

    #[tokio::test]
    async fn a_reply_is_read_within_its_limit() {
        let commands = Commands::default().encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&(commands.len() as u32).to_be_bytes());
        framed.extend_from_slice(&commands);
        assert_eq!(
            read(reply(framed, true)).await.unwrap(),
            Commands::default()
        );
        // No grpc-status at all: what the HTTP status (200) says, not a success.
        assert_eq!(
            read(reply(vec![], false)).await.unwrap_err().code(),
            Code::Unknown
        );
        // A backend answering with more than a reply can be is refused, not buffered whole.
        let huge = vec![0; MAX_REPLY_BYTES + 1];
        assert!(read(reply(huge, true)).await.is_err());
    }

    #[test]
    fn timeouts_and_statuses_read_as_grpc_writes_them() {
        assert_eq!(grpc_timeout(Duration::from_secs(10)), "10000m");
        assert_eq!(grpc_timeout(Duration::ZERO), "0m");
        assert_eq!(grpc_timeout(Duration::from_millis(99_999_999)), "99999999m");
        assert_eq!(grpc_timeout(Duration::from_millis(100_000_000)), "100000S");
        assert_eq!(grpc_timeout(Duration::MAX), "99999999S");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(
            without_grpc_status(http::StatusCode::SERVICE_UNAVAILABLE).code(),
            Code::Unavailable
        );
        assert_eq!(
            without_grpc_status(http::StatusCode::NOT_FOUND).code(),
            Code::Unimplemented
        );
        assert_eq!(
            without_grpc_status(http::StatusCode::OK).code(),
            Code::Unknown
        );
    }
}
