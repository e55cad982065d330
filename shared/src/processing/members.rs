//! Archives larger than one scan window, member by member.
//!
//! Raw windows of a compressed archive show the scanner only compressed bytes, and a
//! nested archive cut by a window boundary cannot be unpacked. So for zip, gzip
//! (tar.gz and plain .gz) and tar files larger than one window, processing adds
//! **member steps** to the file's windows: step k unpacks the archive itself and hands
//! each member whose data begins in its range to clamd as a stream of its own (clamd
//! then unpacks nested archives inside it, within its limits). Steps are recorded and
//! counted exactly like raw windows (`WINDOW#` markers, `windows_done`), so the verdict
//! waits for both and repeats change nothing.
//!
//! - **zip**: the central directory by ranged reads (the `zip` crate over
//!   [`RangedReader`]); step k takes the members whose local header lies in window k
//!   and reads each one's bytes by range, through inflate. Steps fan out at once.
//! - **tar**: positions are the file's own; step k walks headers from the start,
//!   *seeking* over members' data (no bytes read), and scans the members starting in
//!   window k. Steps fan out at once.
//! - **gzip**: no random access; the fan-out job inflates the stream once to learn its
//!   length, and step k re-inflates from the start, skipping to its range. Steps fan
//!   out at once (each bounded by one inflate of the file plus one window of scanning).
//!
//! A member larger than one window is scanned in window-sized pieces with the usual
//! overlap (for tar, its raw windows already cover it); if such a member is itself an
//! archive, its contents cannot be unpacked in pieces, and the file is *not fully
//! scanned*. Encrypted members and compression methods we do not inflate are too.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::{detect, windows::compressed_container, PipelineError, ScanReply, SNIFF_BYTES};
use crate::domain::{WindowFinding, GIB, WINDOW_OVERLAP};
use crate::ports::{ObjectStore, ScanSession, Scanner};

/// How an archive's members are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpacker {
    Zip,
    Gzip,
    Tar,
}

impl Unpacker {
    /// The unpacker for a sniffed media type.
    pub fn for_type(mime: &str) -> Option<Self> {
        Some(match mime {
            "application/zip" | "application/epub+zip" | "application/java-archive" => Unpacker::Zip,
            m if m.starts_with("application/vnd.openxmlformats")
                || m.starts_with("application/vnd.oasis.opendocument") =>
            {
                Unpacker::Zip
            }
            "application/gzip" => Unpacker::Gzip,
            "application/x-tar" => Unpacker::Tar,
            _ => return None,
        })
    }
}

/// A gzip stream is inflated once more by every step: beyond this many compressed
/// bytes that is no longer bounded work, and the file is not unpacked (not fully
/// scanned).
pub const GZIP_MAX_BYTES: u64 = 64 * GIB;

/// A zip member compressed to more than this many windows is not unpacked in one job.
pub const ZIP_MEMBER_MAX_WINDOWS: u64 = 8;

/// Where the object is and who reads it: everything a blocking step needs.
#[derive(Clone)]
pub struct Source {
    pub store: Arc<dyn ObjectStore>,
    pub key: String,
    pub etag: String,
    pub version: Option<String>,
    pub size: u64,
    pub runtime: tokio::runtime::Handle,
}

/// A synchronous `Read + Seek` over the object's pinned version: ranged GETs of 8 MiB
/// when reading on, of 64 KiB after a seek (a tar header, a zip directory).
pub struct RangedReader {
    src: Source,
    pos: u64,
    buf: Bytes,
    buf_start: u64,
}

const SEQUENTIAL_FETCH: u64 = 8 * 1024 * 1024;
const SEEK_FETCH: u64 = 64 * 1024;

impl RangedReader {
    pub fn new(src: Source) -> Self {
        Self { src, pos: 0, buf: Bytes::new(), buf_start: 0 }
    }

    fn fetch(&mut self) -> io::Result<()> {
        let sequential = self.pos == self.buf_start + self.buf.len() as u64;
        let len = if sequential { SEQUENTIAL_FETCH } else { SEEK_FETCH };
        let (start, end) = (self.pos, (self.pos + len).min(self.src.size));
        let src = self.src.clone();
        let bytes = self.src.runtime.block_on(async move {
            let mut body = src.store.read_range(&src.key, &src.etag, src.version.as_deref(), start, end).await?;
            let mut out = Vec::with_capacity((end - start) as usize);
            while let Some(chunk) = body.next().await {
                out.extend_from_slice(&chunk?);
            }
            Ok::<_, crate::ports::ObjectStoreError>(out)
        });
        let bytes = bytes.map_err(io::Error::other)?;
        if bytes.len() as u64 != end - start {
            return Err(io::Error::other(format!("read {} of {} bytes at {start}", bytes.len(), end - start)));
        }
        self.buf = Bytes::from(bytes);
        self.buf_start = start;
        Ok(())
    }
}

impl Read for RangedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.src.size || out.is_empty() {
            return Ok(0);
        }
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            self.fetch()?;
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.src.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// What the members of one step showed the scanner.
#[derive(Debug, Default)]
struct Findings {
    found: Option<String>,
    gap: Option<String>,
    members: u64,
}

impl Findings {
    fn gap(&mut self, why: String) {
        self.gap.get_or_insert(why);
    }
}

/// Scans member streams, each in its own clamd session (pieces of at most one window,
/// overlapping, for a member longer than that).
struct MemberScanner {
    scanner: Arc<dyn Scanner>,
    runtime: tokio::runtime::Handle,
    window: u64,
    findings: Findings,
}

impl MemberScanner {
    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    fn reply(&mut self, session: Box<dyn ScanSession>, name: &str) -> Result<(), PipelineError> {
        match self.block_on(session.finish())? {
            ScanReply::Clean => {}
            ScanReply::Found(sig) => {
                tracing::info!(member = name, signature = %sig, "malware found in an archive member");
                self.findings.found.get_or_insert(sig);
            }
            ScanReply::NotFullyScanned(why) => self.findings.gap(format!("{why} (member {name})")),
            ScanReply::Error(e) => return Err(PipelineError::Other(format!("scanner error: {e}"))),
        }
        Ok(())
    }

    /// Streams `member` to clamd: in one session when it fits a window (and the
    /// overlap), else in pieces of that size that each repeat the overlap before them.
    /// Says what its first bytes are, if an archive, and in how many pieces it went:
    /// an archive not scanned whole in one session cannot have been unpacked.
    fn scan(&mut self, member: &mut dyn Read, name: &str) -> Result<Scanned, PipelineError> {
        self.findings.members += 1;
        let mut session = self.block_on(super::start_scan(&*self.scanner))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut head: Vec<u8> = Vec::new();
        let mut tail: Vec<u8> = Vec::new();
        let mut in_session = 0u64;
        let mut pieces = 1u32;
        loop {
            let n = member.read(&mut buf).map_err(|e| PipelineError::Read(format!("member {name}: {e}")))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if head.len() < SNIFF_BYTES {
                head.extend_from_slice(&chunk[..(SNIFF_BYTES - head.len()).min(n)]);
            }
            if in_session + n as u64 > self.window + WINDOW_OVERLAP {
                // This session is full: close it, and start the next one with the overlap.
                self.reply(session, name)?;
                session = self.block_on(super::start_scan(&*self.scanner))?;
                self.block_on(session.send(&tail))?;
                in_session = tail.len() as u64;
                pieces += 1;
            }
            self.block_on(session.send(chunk))?;
            in_session += n as u64;
            tail.extend_from_slice(chunk);
            let keep = WINDOW_OVERLAP as usize;
            if tail.len() > 2 * keep {
                tail.drain(..tail.len() - keep);
            }
        }
        if tail.len() > WINDOW_OVERLAP as usize {
            tail.drain(..tail.len() - WINDOW_OVERLAP as usize);
        }
        self.reply(session, name)?;
        Ok(Scanned { archive: detect(&head).as_deref().and_then(archive_kind), pieces })
    }

    /// A member that is an archive but was scanned in pieces: its contents were not
    /// unpacked.
    fn cut_archive(&mut self, name: &str, kind: &str) {
        self.findings.gap(format!(
            "its member {name} is a {kind} larger than one scan window, which cannot be unpacked in pieces"
        ));
    }

    /// A whole member: a gap only if it had to be cut.
    fn scan_whole(&mut self, member: &mut dyn Read, name: &str) -> Result<(), PipelineError> {
        let s = self.scan(member, name)?;
        if let (Some(kind), true) = (s.archive, s.pieces > 1) {
            self.cut_archive(name, kind);
        }
        Ok(())
    }
}

/// How a member stream went to the scanner.
struct Scanned {
    /// What its first bytes say it is, if an archive clamd would unpack.
    archive: Option<&'static str>,
    /// Scanner sessions it took.
    pieces: u32,
}

/// An archive type clamd would unpack (so a member of it cut into pieces hides its contents).
fn archive_kind(mime: &str) -> Option<&'static str> {
    compressed_container(mime).or(match mime {
        "application/x-tar" => Some("tar archive"),
        _ => None,
    })
}

/// Sniffs the first bytes of the object.
pub async fn sniff(src: &Source) -> Result<Vec<u8>, PipelineError> {
    let end = src.size.min(SNIFF_BYTES as u64);
    let mut body = src.store.read_range(&src.key, &src.etag, src.version.as_deref(), 0, end).await?;
    let mut head = Vec::new();
    while let Some(chunk) = body.next().await {
        head.extend_from_slice(&chunk?);
    }
    Ok(head)
}

/// How many member steps a file needs (0: its members are not unpacked, e.g. a gzip
/// stream too large to inflate once per step). For gzip this inflates the stream once.
pub async fn steps_for(src: &Source, unpacker: Unpacker, window: u64) -> Result<u32, PipelineError> {
    let raw_windows = src.size.div_ceil(window) as u32;
    match unpacker {
        Unpacker::Zip | Unpacker::Tar => Ok(raw_windows),
        Unpacker::Gzip if src.size > GZIP_MAX_BYTES => Ok(0),
        Unpacker::Gzip => {
            let src = src.clone();
            let length = tokio::task::spawn_blocking(move || {
                let mut inflated = flate2::read::MultiGzDecoder::new(io::BufReader::new(RangedReader::new(src)));
                io::copy(&mut inflated, &mut io::sink())
            })
            .await
            .map_err(|e| PipelineError::Other(format!("inflate task: {e}")))?;
            // A stream that does not inflate is scanned as it is (raw windows), not unpacked.
            Ok(length.map(|n| n.div_ceil(window).max(1) as u32).unwrap_or(0))
        }
    }
}

/// Scans member step `step` of the archive and says what it found.
pub async fn scan_step(
    src: Source,
    scanner: Arc<dyn Scanner>,
    unpacker: Unpacker,
    window: u64,
    step: u32,
) -> Result<WindowFinding, PipelineError> {
    let runtime = src.runtime.clone();
    let findings = tokio::task::spawn_blocking(move || {
        let mut ms = MemberScanner { scanner, runtime, window, findings: Findings::default() };
        let range = u64::from(step) * window..(u64::from(step) + 1) * window;
        match unpacker {
            Unpacker::Zip => zip_step(&src, &mut ms, range, window)?,
            Unpacker::Tar => {
                let mut archive = tar::Archive::new(io::BufReader::new(RangedReader::new(src)));
                // Seeks over the data of members outside the range: no bytes read.
                walk_tar(archive.entries_with_seek(), &mut ms, range, true)?
            }
            Unpacker::Gzip => gzip_step(src, &mut ms, range)?,
        }
        Ok::<_, PipelineError>(ms.findings)
    })
    .await
    .map_err(|e| PipelineError::Other(format!("member scan task: {e}")))??;
    tracing::info!(step, members = findings.members, found = ?findings.found, gap = ?findings.gap, "member step scanned");
    Ok(WindowFinding { found: findings.found, gap: findings.gap, head: None })
}

/// The members whose local header lies in `range`, each through inflate.
fn zip_step(
    src: &Source,
    ms: &mut MemberScanner,
    range: std::ops::Range<u64>,
    window: u64,
) -> Result<(), PipelineError> {
    let mut archive = match zip::ZipArchive::new(RangedReader::new(src.clone())) {
        Ok(a) => a,
        Err(zip::result::ZipError::Io(e)) => return Err(PipelineError::Read(format!("zip directory: {e}"))),
        Err(e) => {
            ms.findings.gap(format!("its zip directory cannot be read ({e})"));
            return Ok(());
        }
    };
    for i in 0..archive.len() {
        let (start, compressed, encrypted, is_dir, name) = match archive.by_index_raw(i) {
            Ok(f) => (f.header_start(), f.compressed_size(), f.encrypted(), f.is_dir(), f.name().to_owned()),
            Err(e) => {
                ms.findings.gap(format!("its zip member {i} cannot be read ({e})"));
                continue;
            }
        };
        if !range.contains(&start) || is_dir {
            continue;
        }
        if encrypted {
            ms.findings.gap(format!("its member {name} is encrypted (password-protected), so it cannot be read"));
            continue;
        }
        if compressed > ZIP_MEMBER_MAX_WINDOWS * window {
            ms.findings
                .gap(format!("its member {name} is too large ({compressed} bytes compressed) to unpack in one job"));
            continue;
        }
        match archive.by_index(i) {
            Ok(mut member) => ms.scan_whole(&mut member, &name)?,
            Err(zip::result::ZipError::Io(e)) => return Err(PipelineError::Read(format!("member {name}: {e}"))),
            Err(e) => ms.findings.gap(format!("its member {name} cannot be unpacked ({e})")),
        }
    }
    Ok(())
}

/// The members whose data begins in `range` (positions in the tar stream). Members
/// before it are skipped: sought over when the stream can seek (a plain tar), read past
/// otherwise (an inflating gzip). A member larger than a window: in a plain tar its raw
/// windows scan its bytes, so only an archive inside it matters (a gap); through gzip
/// every step scans its own piece of it.
fn walk_tar<R: Read>(
    entries: io::Result<tar::Entries<'_, R>>,
    ms: &mut MemberScanner,
    range: std::ops::Range<u64>,
    raw_windows_cover_it: bool,
) -> Result<(), PipelineError> {
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            ms.findings.gap(format!("its tar headers cannot be read ({e})"));
            return Ok(());
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                ms.findings.gap(format!("its tar headers cannot be read past a point ({e})"));
                return Ok(());
            }
        };
        let (d0, len) = (entry.raw_file_position(), entry.size());
        let d1 = d0 + len;
        if d0 >= range.end {
            break;
        }
        if d1 <= range.start.saturating_sub(WINDOW_OVERLAP) || !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_else(|_| "(unnamed)".into());
        let window = range.end - range.start;
        if len <= window {
            if range.contains(&d0) {
                ms.scan_whole(&mut entry, &name)?;
            }
            continue;
        }
        // A member longer than a window.
        if raw_windows_cover_it {
            if range.contains(&d0) {
                let mut head = vec![0u8; SNIFF_BYTES.min(len as usize)];
                entry.read_exact(&mut head).map_err(|e| PipelineError::Read(format!("member {name}: {e}")))?;
                if let Some(kind) = detect(&head).as_deref().and_then(archive_kind) {
                    ms.findings.gap(format!(
                        "its member {name} is a {kind} larger than one scan window, which cannot be unpacked in pieces"
                    ));
                }
            }
            continue;
        }
        // Through gzip: this step's piece, with the overlap before it.
        let from = range.start.saturating_sub(WINDOW_OVERLAP).max(d0);
        let to = range.end.min(d1);
        io::copy(&mut (&mut entry).take(from - d0), &mut io::sink())
            .map_err(|e| PipelineError::Read(format!("member {name}: {e}")))?;
        let scanned = ms.scan(&mut (&mut entry).take(to - from), &name)?;
        // Only the piece that starts the member can tell whether it is an archive; the
        // member goes on past this step, so it is cut.
        if let (Some(kind), true) = (scanned.archive, from == d0) {
            ms.cut_archive(&name, kind);
        }
    }
    Ok(())
}

/// A gzip stream: a tar inside is walked member by member; anything else is scanned as
/// the inflated stream's piece in `range`, with the overlap before it.
fn gzip_step(src: Source, ms: &mut MemberScanner, range: std::ops::Range<u64>) -> Result<(), PipelineError> {
    let open = || flate2::read::MultiGzDecoder::new(io::BufReader::new(RangedReader::new(src.clone())));
    let mut first = [0u8; 512];
    let mut probe = open();
    let got = read_full(&mut probe, &mut first).map_err(|e| PipelineError::Read(format!("inflating: {e}")))?;
    let is_tar = got == 512 && matches!(&first[257..262], b"ustar");
    if is_tar {
        let mut archive = tar::Archive::new(open());
        return walk_tar(archive.entries(), ms, range, false);
    }
    let mut inflated = open();
    let from = range.start.saturating_sub(WINDOW_OVERLAP);
    io::copy(&mut (&mut inflated).take(from), &mut io::sink())
        .map_err(|e| PipelineError::Read(format!("inflating: {e}")))?;
    let name = "(the inflated stream)";
    let mut piece = inflated.take(range.end - from);
    let scanned = ms.scan(&mut piece, name)?;
    // The piece from the start shows whether the stream is an archive (a .zip.gz): cut
    // if it took pieces or goes on past this step.
    let goes_on =
        read_full(&mut piece.into_inner(), &mut [0u8; 1]).map_err(|e| PipelineError::Read(e.to_string()))? > 0;
    if let (Some(kind), true, true) = (scanned.archive, from == 0, scanned.pieces > 1 || goes_on) {
        ms.cut_archive(name, kind);
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
