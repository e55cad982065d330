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
    /// How long a refused connection is retried: clamd may still be loading its
    /// definitions beside us (the ClamAV layer's extension starts it at cold start).
    pub start_wait: Duration,
}

impl Clamd {
    pub fn from_config(config: &crate::config::ProcessConfig) -> Self {
        Self { addr: config.clamd_addr.clone(), start_wait: config.clamd_start_wait }
    }
}

#[async_trait]
impl Scanner for Clamd {
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScannerError> {
        Ok(Box::new(Instream::start_waiting(&self.addr, self.start_wait).await?))
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
        Self::start_waiting(addr, Duration::ZERO).await
    }

    /// Starts a scan, retrying a refused connection for up to `start_wait`.
    pub async fn start_waiting(addr: &str, start_wait: Duration) -> Result<Self, ScannerError> {
        let err = |d: String| ScannerError { addr: addr.to_owned(), detail: d };
        let since = std::time::Instant::now();
        let mut stream = loop {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Err(_) => return Err(err("connect timed out".into())),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused && since.elapsed() < start_wait => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(r) => break r.map_err(|e| err(e.to_string()))?,
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A scanner that starts after us (the layer's clamd still loading) is waited for,
    /// for as long as configured, and no longer.
    #[tokio::test]
    async fn a_refused_connection_is_retried_only_within_the_start_wait() {
        // A free port, closed again: connections to it are refused until we listen.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(Instream::start_waiting(&addr, Duration::ZERO).await.is_err());
        let late = addr.clone();
        let listener = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let l = tokio::net::TcpListener::bind(&late).await.unwrap();
            let (mut sock, _) = l.accept().await.unwrap();
            let mut command = [0u8; 10];
            sock.read_exact(&mut command).await.unwrap();
            command
        });
        let started = std::time::Instant::now();
        let scanner = Clamd { addr: addr.clone(), start_wait: Duration::from_secs(5) };
        assert!(scanner.start().await.is_ok(), "the late scanner was not waited for");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(&listener.await.unwrap(), b"zINSTREAM\0");
    }
}
