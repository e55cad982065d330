//! Pure decisions of the processing pipeline, testable without AWS or clamd:
//! what the bytes really are, what clamd's answer means, and the resulting status.

use crate::domain::ContentType;

/// Bytes of the object's head kept for magic-byte detection (`infer` needs at most 512).
pub const SNIFF_BYTES: usize = 8192;

/// clamd's answer to INSTREAM, parsed by us: only an explicit `OK` is clean, and a limit
/// is never malware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanReply {
    Clean,
    Found(String),
    /// clamd read the stream but could not look at all of it: a limit was reached, or the
    /// content is encrypted. Not clean, and not malware. Holds the reason in plain words.
    NotFullyScanned(String),
    /// clamd failed (connection, I/O). Never clean; the job is retried.
    Error(String),
}

/// Why clamd could not look at everything, in words, from its heuristic name.
fn not_fully_scanned(signature: &str) -> Option<String> {
    if let Some(limit) = signature.strip_prefix("Heuristics.Limits.Exceeded.") {
        let what = match limit.split('.').next().unwrap_or(limit) {
            "MaxFiles" => "it holds more files than the scanner opens in one archive",
            "MaxScanSize" => "it holds more data than the scanner reads in one scan",
            "MaxFileSize" => "a file inside it is larger than the scanner reads",
            "MaxRecursion" => "its archives are nested deeper than the scanner follows",
            "MaxScanTime" => "scanning it took longer than the scanner allows",
            _ => "it exceeds one of the scanner's limits",
        };
        return Some(format!("{what} ({signature})"));
    }
    if signature.starts_with("Heuristics.Encrypted") {
        return Some(format!("it is encrypted (password-protected), so its contents cannot be read ({signature})"));
    }
    None
}

impl ScanReply {
    pub fn parse(raw: &str) -> Self {
        let line = raw.trim_end_matches(['\0', '\n', '\r']).trim();
        // Replies look like `stream: OK`, `stream: Eicar-Signature FOUND`, `... ERROR`.
        let body = line.strip_prefix("stream:").map(str::trim).unwrap_or(line);
        if body == "OK" {
            ScanReply::Clean
        } else if let Some(sig) = body.strip_suffix(" FOUND") {
            let sig = sig.trim();
            match not_fully_scanned(sig) {
                Some(why) => ScanReply::NotFullyScanned(why),
                None => ScanReply::Found(sig.to_owned()),
            }
        } else if body.contains("size limit exceeded") {
            ScanReply::NotFullyScanned("it is larger than the scanner accepts in one stream".into())
        } else if body.is_empty() {
            ScanReply::Error("clamd closed the connection without an answer".into())
        } else {
            ScanReply::Error(body.to_owned())
        }
    }
}

/// Media types whose first bytes say what they are; a declared type from this list
/// must match what `infer` reads.
fn has_magic(ct: &str) -> bool {
    matches!(
        ct,
        "image/jpeg"
            | "image/png"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "image/heic"
            | "image/tiff"
            | "application/pdf"
            | "application/zip"
            | "application/gzip"
            | "application/x-7z-compressed"
            | "application/zstd"
            | "video/mp4"
            | "video/webm"
            | "video/quicktime"
            | "audio/mpeg"
            | "audio/ogg"
            | "audio/flac"
            | "audio/wav"
    )
}

/// Equivalent spellings of one type.
fn same_type(declared: &str, detected: &str) -> bool {
    if declared == detected {
        return true;
    }
    fn canon(t: &str) -> &str {
        match t {
            "image/jpg" | "image/pjpeg" => "image/jpeg",
            "audio/x-wav" | "audio/wave" => "audio/wav",
            "audio/x-flac" => "audio/flac",
            "application/x-gzip" => "application/gzip",
            "video/x-m4v" => "video/mp4",
            other => other,
        }
    }
    canon(declared) == canon(detected)
}

/// Detected types that are never accepted, whatever was declared.
fn is_dangerous(detected: &str) -> bool {
    matches!(
        detected,
        "application/vnd.microsoft.portable-executable"
            | "application/x-executable"
            | "application/x-elf"
            | "application/x-mach-binary"
            | "application/x-msdownload"
            | "application/x-sharedlib"
            | "application/x-shellscript"
            | "text/html"
            | "application/java-archive"
            | "application/vnd.android.package-archive"
            | "application/x-msi"
            | "application/wasm"
            | "application/x-ole-storage"
    )
}

fn looks_like_html(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).to_ascii_lowercase();
    // A browser looks past an XML prolog, processing instructions and comments: so do we.
    let mut t = text.as_str();
    loop {
        t = t.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        let skip = if t.starts_with("<?") {
            t.find("?>").map(|i| i + 2)
        } else if t.starts_with("<!--") {
            t.find("-->").map(|i| i + 3)
        } else {
            break;
        };
        match skip {
            Some(i) => t = &t[i..],
            None => break,
        }
    }
    ["<!doctype html", "<html", "<script", "<head", "<body", "<iframe", "<svg", "<xsl:stylesheet", "<xsl:transform"]
        .iter()
        .any(|p| t.starts_with(p))
}

/// What the first bytes are (a MIME type), if known.
pub fn detect(head: &[u8]) -> Option<String> {
    let inferred = infer::get(head).map(|k| k.mime_type());
    // XML (as `infer` calls anything starting `<?xml`) is HTML or SVG when its root says so.
    if matches!(inferred, None | Some("text/xml" | "application/xml")) && looks_like_html(head) {
        return Some("text/html".to_owned());
    }
    if let Some(mime) = inferred {
        return Some(mime.to_owned());
    }
    if head.starts_with(b"#!") {
        return Some("application/x-shellscript".to_owned());
    }
    None
}

/// Checks the real type against the declared one. `Ok(detected)` when acceptable,
/// `Err(sentence)` when the upload must be rejected.
pub fn check_type(declared: &ContentType, head: &[u8]) -> Result<Option<String>, String> {
    let detected = detect(head);
    let declared_s = declared.as_str();
    match detected.as_deref() {
        Some(d) if is_dangerous(d) => {
            Err(format!("The file is really {d} (declared {declared_s}); executables and web pages are not accepted."))
        }
        Some(d) if has_magic(declared_s) && !same_type(declared_s, d) => {
            Err(format!("The file's bytes are {d}, not the declared {declared_s}."))
        }
        None if has_magic(declared_s) && !head.is_empty() => {
            Err(format!("The file's bytes do not look like {declared_s}."))
        }
        _ => Ok(detected),
    }
}

/// The final word on a processed file, in precedence order: malware first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Quarantined {
        signature: String,
    },
    Rejected {
        reason: String,
    },
    Corrupt {
        reason: String,
    },
    Unscanned {
        reason: String,
    },
    Ready,
    /// Served by policy although not fully scanned (`HOIST_UNSCANNED_POLICY=allow`).
    ReadyUnscanned {
        reason: String,
    },
}

impl Verdict {
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Quarantined { .. } => "quarantined",
            Verdict::Rejected { .. } => "rejected",
            Verdict::Corrupt { .. } => "corrupt",
            Verdict::Unscanned { .. } => "unscanned",
            Verdict::Ready | Verdict::ReadyUnscanned { .. } => "ready",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Verdict::Quarantined { signature } => {
                format!("Malware found ({signature}); the file is quarantined and will never be served.")
            }
            Verdict::Rejected { reason }
            | Verdict::Corrupt { reason }
            | Verdict::Unscanned { reason }
            | Verdict::ReadyUnscanned { reason } => reason.clone(),
            Verdict::Ready => "Checked: type verified, checksum verified, no malware found.".into(),
        }
    }
}

/// What to do with files the scanner cannot take (larger than its limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnscannedPolicy {
    /// Never downloadable (status `unscanned`). The default.
    Block,
    /// Served, with the reason saying it was not scanned.
    Allow,
}

/// Combines the pass's findings. `scan` is None when the file was too big to scan.
pub fn decide(
    scan: Option<&ScanReply>,
    type_check: &Result<Option<String>, String>,
    declared_sha256: Option<[u8; 32]>,
    actual_sha256: [u8; 32],
    policy: UnscannedPolicy,
) -> Result<Verdict, String> {
    if let Some(ScanReply::Found(sig)) = scan {
        return Ok(Verdict::Quarantined { signature: sig.clone() });
    }
    if let Err(reason) = type_check {
        return Ok(Verdict::Rejected { reason: reason.clone() });
    }
    if let Some(expected) = declared_sha256 {
        if expected != actual_sha256 {
            return Ok(Verdict::Corrupt {
                reason: format!(
                    "The file's SHA-256 is {}, not the declared {}.",
                    hex::encode(actual_sha256),
                    hex::encode(expected)
                ),
            });
        }
    }
    match scan {
        Some(ScanReply::Clean) => Ok(Verdict::Ready),
        Some(ScanReply::NotFullyScanned(why)) => Ok(unscanned(policy, why)),
        Some(ScanReply::Error(e)) => Err(format!("scanner error: {e}")),
        Some(ScanReply::Found(sig)) => Ok(Verdict::Quarantined { signature: sig.clone() }),
        None => Ok(unscanned(policy, "it is larger than the scanner accepts")),
    }
}

/// A file the scanner could not fully read: `unscanned` and never served (`block`, the
/// default), or served with the reason saying so (`allow`).
fn unscanned(policy: UnscannedPolicy, why: &str) -> Verdict {
    match policy {
        UnscannedPolicy::Block => Verdict::Unscanned {
            reason: format!(
                "Not fully scanned for malware: {why}. Type and checksum are verified, but the file will not be served."
            ),
        },
        UnscannedPolicy::Allow => Verdict::ReadyUnscanned {
            reason: format!(
                "Type and checksum verified; not fully scanned for malware ({why}); served by this service's policy."
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(s: &str) -> ContentType {
        ContentType::parse(s).unwrap()
    }

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn clamd_replies() {
        assert_eq!(ScanReply::parse("stream: OK\0"), ScanReply::Clean);
        assert_eq!(
            ScanReply::parse("stream: Eicar-Test-Signature FOUND\0"),
            ScanReply::Found("Eicar-Test-Signature".into())
        );
        let e = ScanReply::parse("INSTREAM size limit exceeded. ERROR\0");
        assert!(matches!(e, ScanReply::NotFullyScanned(ref w) if w.contains("larger than")), "{e:?}");
        // A limit or encryption is never malware.
        for (reply, words) in [
            ("stream: Heuristics.Limits.Exceeded.MaxFiles FOUND\0", "more files"),
            ("stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND\0", "more data"),
            ("stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND\0", "nested deeper"),
            ("stream: Heuristics.Limits.Exceeded.Something.New FOUND\0", "limits"),
            ("stream: Heuristics.Encrypted.Zip FOUND\0", "encrypted"),
            ("stream: Heuristics.Encrypted.PDF FOUND\0", "encrypted"),
        ] {
            match ScanReply::parse(reply) {
                ScanReply::NotFullyScanned(why) => assert!(why.contains(words), "{reply}: {why}"),
                other => panic!("{reply} read as {other:?}"),
            }
        }
        assert_eq!(
            ScanReply::parse("stream: Heuristics.Broken.Executable FOUND\0"),
            ScanReply::Found("Heuristics.Broken.Executable".into()),
            "other heuristics are detections"
        );
        assert!(matches!(ScanReply::parse(""), ScanReply::Error(_)));
        assert!(matches!(ScanReply::parse("stream: OKAY"), ScanReply::Error(_)), "only exactly OK is clean");
    }

    #[test]
    fn types() {
        assert_eq!(check_type(&ct("image/jpeg"), JPEG).unwrap().as_deref(), Some("image/jpeg"));
        assert_eq!(check_type(&ct("image/png"), PNG).unwrap().as_deref(), Some("image/png"));
        // An ELF or PE named photo.jpg.
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
        elf.resize(64, 0);
        let elf = &elf[..];
        assert!(check_type(&ct("image/jpeg"), elf).unwrap_err().contains("not accepted"));
        let pe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
        assert!(check_type(&ct("image/jpeg"), pe).is_err());
        assert!(
            check_type(&ct("application/octet-stream"), pe).is_err(),
            "executables are refused even as octet-stream"
        );
        // HTML declared as PNG; HTML as text/plain.
        assert!(check_type(&ct("image/png"), b"<!DOCTYPE html><html><script>x</script>").is_err());
        assert!(check_type(&ct("text/plain"), b"  <html><body>hi").is_err());
        // Behind an XML prolog or comments, as a browser would read it.
        assert!(check_type(&ct("text/plain"), b"<?xml version=\"1.0\"?>\n<!-- x --><html><script>x</script>").is_err());
        assert!(check_type(&ct("application/octet-stream"), b"<!-- a --> <!-- b --><svg onload=alert(1)>").is_err());
        assert!(check_type(&ct("text/plain"), b"<?xml version=\"1.0\"?><xsl:stylesheet version=\"1.0\">").is_err());
        assert!(
            check_type(&ct("text/plain"), b"<?xml version=\"1.0\"?><data><row>1</row></data>").is_ok(),
            "plain XML data is data"
        );
        // A PNG declared as JPEG; random bytes declared as JPEG.
        assert!(check_type(&ct("image/jpeg"), PNG).unwrap_err().contains("image/png"));
        assert!(check_type(&ct("image/jpeg"), b"hello world").is_err());
        // Plain text and unknown binary are fine where no magic is expected.
        assert_eq!(check_type(&ct("text/plain"), b"hello").unwrap(), None);
        assert_eq!(check_type(&ct("application/octet-stream"), &[1, 2, 3, 4]).unwrap(), None);
        // Empty files have no head to judge.
        assert!(check_type(&ct("image/jpeg"), b"").is_ok());
        assert!(check_type(&ct("image/jpg"), JPEG).is_ok());
    }

    #[test]
    fn verdict_precedence() {
        let sha = [1u8; 32];
        let ok: Result<Option<String>, String> = Ok(None);
        let bad: Result<Option<String>, String> = Err("wrong type".into());
        let found = ScanReply::Found("Eicar".into());
        let clean = ScanReply::Clean;
        let b = UnscannedPolicy::Block;
        assert_eq!(decide(Some(&found), &bad, Some([0; 32]), sha, b).unwrap().status(), "quarantined");
        assert_eq!(decide(Some(&clean), &bad, Some([0; 32]), sha, b).unwrap().status(), "rejected");
        assert_eq!(decide(Some(&clean), &ok, Some([0; 32]), sha, b).unwrap().status(), "corrupt");
        assert_eq!(decide(Some(&clean), &ok, Some(sha), sha, b).unwrap(), Verdict::Ready);
        assert_eq!(decide(Some(&clean), &ok, None, sha, b).unwrap(), Verdict::Ready);
        let limit = ScanReply::parse("stream: Heuristics.Limits.Exceeded.MaxFiles FOUND");
        let v = decide(Some(&limit), &ok, None, sha, b).unwrap();
        assert_eq!(v.status(), "unscanned");
        assert!(v.reason().contains("more files") && !v.reason().contains("Malware"), "{}", v.reason());
        let v = decide(Some(&limit), &ok, None, sha, UnscannedPolicy::Allow).unwrap();
        assert_eq!(v.status(), "ready");
        assert!(v.reason().contains("not fully scanned"), "{}", v.reason());
        assert_eq!(decide(None, &ok, None, sha, b).unwrap().status(), "unscanned");
        // Malware found in what was read still wins over a limit elsewhere.
        assert_eq!(decide(Some(&found), &ok, None, sha, b).unwrap().status(), "quarantined");
        // Any other scanner error is a retryable failure, never clean.
        assert!(decide(Some(&ScanReply::Error("boom".into())), &ok, None, sha, b).is_err());
    }
}
