//! The scanner on ClamAV: clamd's INSTREAM protocol over TCP, fed chunk by chunk while the object streams
//! past, so the file is read once and never held whole.
//!
//! Written here rather than with `clamav-client`: we must tee one S3 stream into
//! clamd, the hash and the type sniffer, and we must keep clamd's own words when it
//! refuses a stream (that crate reports a bare BrokenPipe over the size limit).

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use async_trait::async_trait;

use crate::ports::{ScanSession, Scanner, ScannerError};
use crate::processing::ScanReply;

/// [`Scanner`] on a clamd reachable over TCP.
#[derive(Debug, Clone)]
pub struct Clamd {
    pub addr: String,
}

#[async_trait]
impl Scanner for Clamd {
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScannerError> {
        Ok(Box::new(Instream::start(&self.addr).await?))
    }
}

#[async_trait]
impl ScanSession for Instream {
    async fn send(&mut self, chunk: &[u8]) -> Result<(), ScannerError> {
        Instream::send(self, chunk).await
    }
    async fn finish(self: Box<Self>) -> Result<ScanReply, ScannerError> {
        Instream::finish(*self).await
    }
}

/// Largest chunk sent in one INSTREAM frame.
const FRAME: usize = 64 * 1024;

pub struct Instream {
    stream: TcpStream,
    addr: String,
    /// Set when clamd stopped reading (it closes after refusing a stream).
    refused: bool,
}

impl Instream {
    pub async fn start(addr: &str) -> Result<Self, ScannerError> {
        let err = |d: String| ScannerError { addr: addr.to_owned(), detail: d };
        let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| err("connect timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        stream.set_nodelay(true).ok();
        stream.write_all(b"zINSTREAM\0").await.map_err(|e| err(e.to_string()))?;
        Ok(Self { stream, addr: addr.to_owned(), refused: false })
    }

    /// Sends bytes; after clamd refuses (size limit), further data is dropped and
    /// `finish` reports clamd's reason.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ScannerError> {
        if self.refused {
            return Ok(());
        }
        for frame in data.chunks(FRAME) {
            let len = (frame.len() as u32).to_be_bytes();
            let res = async {
                self.stream.write_all(&len).await?;
                self.stream.write_all(frame).await
            }
            .await;
            if let Err(e) = res {
                if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
                    self.refused = true;
                    return Ok(());
                }
                return Err(ScannerError { addr: self.addr.clone(), detail: e.to_string() });
            }
        }
        Ok(())
    }

    /// Ends the stream and reads clamd's verdict.
    pub async fn finish(mut self) -> Result<ScanReply, ScannerError> {
        if !self.refused {
            // A zero-length frame ends the stream; a refused stream may already be closed.
            let _ = self.stream.write_all(&0u32.to_be_bytes()).await;
        }
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(600), self.stream.read_to_end(&mut reply)).await;
        match read {
            Err(_) => Err(ScannerError { addr: self.addr, detail: "no verdict within 600 s".into() }),
            Ok(Err(e)) if reply.is_empty() => Err(ScannerError { addr: self.addr, detail: e.to_string() }),
            Ok(_) => Ok(ScanReply::parse(&String::from_utf8_lossy(&reply))),
        }
    }
}

/// `PING` → `PONG`: is clamd up?
pub async fn ping(addr: &str) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await else {
        return false;
    };
    if s.write_all(b"zPING\0").await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"PONG")
}
