//! TCP connections for tonic, counted, with our own connect timeout, and TLS on them when it is
//! on ([`super::tls`]'s configuration, the handshake bounded by its timeout).
//!
//! A `tower_service::Service<Uri>`, which is what tonic's `connect_with_connector` takes: tonic
//! then speaks HTTP/2 over whatever this hands back, plain or secure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why a reconnect was refused.
pub(crate) const CLOSED_BEFORE_ANSWER: &str = "the connection closed before any call was answered";

/// How long a TCP connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One per channel.
#[derive(Clone, Debug)]
pub(crate) struct TcpConnector {
    /// Connections opened so far. tonic reconnects a channel by itself after a backend
    /// restarts; this count is how the transport notices (see `Transport::session`).
    pub(crate) connections: Arc<AtomicU64>,
    /// Whether a connection may be made now: true for the channel's first, then again only
    /// once a call has succeeded since the last one (the transport sets it). tonic reconnects a
    /// channel whose connection died at once and without a pause: fine after a backend
    /// restart, a second connection per attempt against a listener that accepts and closes.
    /// Refused here, the call fails instead, and the transport's back-off decides.
    pub(crate) may_connect: Arc<AtomicBool>,
    /// TLS around the connection, when on.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl tower_service::Service<http::Uri> for TcpConnector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connections = Arc::clone(&self.connections);
        let allowed = self.may_connect.swap(false, Ordering::Relaxed);
        let tls = self.tls.clone();
        Box::pin(async move {
            if !allowed {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    CLOSED_BEFORE_ANSWER,
                ));
            }
            let host = uri.host().unwrap_or_default();
            // `[::1]` in a URI is `::1` to the resolver.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(11800);
            let connect = TcpStream::connect((host.as_str(), port));
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(stream) => stream?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no answer to the TCP connect within {} s",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                    ));
                }
            };
            stream.set_nodelay(true)?;
            connections.fetch_add(1, Ordering::Relaxed);
            let Some(config) = tls else {
                return Ok(TokioIo::new(Stream::Plain(stream)));
            };
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("not a host name for TLS: {e}"),
                )
            })?;
            let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream);
            match tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, handshake).await {
                Ok(secure) => Ok(TokioIo::new(Stream::Tls(Box::new(secure?)))),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no TLS handshake within {} s",
                        super::tls::HANDSHAKE_TIMEOUT.as_secs()
                    ),
                )),
            }
        })
    }
}

/// A connection to OAP, plain or secure.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
