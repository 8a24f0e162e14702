//! What a guest prints to stdout and stderr: held per call (at most [`HELD`] bytes each), then
//! handed to the pipeline's guest log line by line, where the call was ([`super::LogContext`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Most bytes of one stream held from one call; the rest is counted and dropped.
pub const HELD: usize = 64 << 10;

/// One of a guest's output streams, as the host holds it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Held>>);

#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Captured {
    fn append(&self, bytes: &[u8]) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = HELD.saturating_sub(held.bytes.len());
        let kept = bytes.len().min(room);
        held.bytes.extend_from_slice(&bytes[..kept]);
        held.dropped += bytes.len() - kept;
    }

    /// The lines printed since the last take (a last line without its newline too), and how
    /// many bytes past [`HELD`] were dropped.
    pub fn take(&self) -> (Vec<String>, usize) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if held.bytes.is_empty() && held.dropped == 0 {
            return (Vec::new(), 0);
        }
        let bytes = std::mem::take(&mut held.bytes);
        let dropped = std::mem::take(&mut held.dropped);
        let text = String::from_utf8_lossy(&bytes);
        (text.lines().map(str::to_owned).collect(), dropped)
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(HELD)
    }
}

impl AsyncWrite for Captured {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
