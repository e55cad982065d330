//! Domain newtypes: each can only hold a valid value, so code past the parsing
//! edge never re-checks. Errors carry a sentence a person can act on.
//!
//! Sizes, part numbers and S3's limits are shared with every client (`api_types::limits`).

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use api_types::limits::*;
pub use api_types::plan::PartPlan;

mod error;
mod job;
pub mod links;
mod status;
mod upload;
pub mod windows;

pub use error::UploadError;
pub use job::ProcessJob;
pub use status::{Transition, UploadStatus};
pub use upload::{
    catalog_sort_key, CatalogPosition, FilePage, PartRecord, ProcessingOutcome, Quota, QuotaLimits, Upload,
    CLOSED_RETENTION_SECS, MAX_SCANNER_WAITS, SCANNER_RETRY_SECS,
};
pub use windows::{HashProgress, HeadFinding, WindowFinding, WindowJob, WindowPlan, WINDOW_OVERLAP};

/// Our upload id: 32 lowercase hex characters (a random UUIDv4, simple form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

impl UploadId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::new("id", "that is not an upload id."))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UploadId {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        UploadId::parse(&s)
    }
}
impl From<UploadId> for String {
    fn from(u: UploadId) -> String {
        u.0
    }
}
impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The authenticated owner (the JWT `sub`). Printable, at most 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Owner(String);

impl Owner {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_control()) {
            return Err(Invalid::new("sub", "the token's subject is not a usable owner id."));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Owner {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        Owner::parse(&s)
    }
}
impl From<Owner> for String {
    fn from(o: Owner) -> String {
        o.0
    }
}
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Most bytes a file name may take (common file-system limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// A file name as the user gave it, refused when it could lie or escape:
/// no path parts, no control characters or NUL, no bidirectional overrides
/// (which make `gpj.exe` display as `exe.jpg`), at most 255 bytes.
/// `display()` is the original (trimmed); `ascii_fallback()` is a sanitized,
/// ASCII-only form for places such as HTTP headers and S3 metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_invisible_format(c: char) -> bool {
    // Zero-width characters and BOM hide what a name really says.
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

impl FileName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let f = "filename";
        if raw.contains('\0') {
            return Err(Invalid::new(f, "filename must not contain NUL characters."));
        }
        if raw.chars().any(|c| c.is_control()) {
            return Err(Invalid::new(f, "filename must not contain control characters such as newlines or tabs."));
        }
        if raw.chars().any(is_bidi_control) {
            return Err(Invalid::new(
                f,
                "filename must not contain bidirectional-override characters (they can disguise a file's real extension).",
            ));
        }
        if raw.chars().any(is_invisible_format) {
            return Err(Invalid::new(f, "filename must not contain invisible zero-width characters."));
        }
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new(f, "filename must not be empty."));
        }
        if name.contains('/') || name.contains('\\') {
            return Err(Invalid::new(f, "filename must be a bare file name, without '/' or '\\' path parts."));
        }
        if name == "." || name == ".." {
            return Err(Invalid::new(f, "filename must not be '.' or '..'."));
        }
        if name.len() > MAX_FILE_NAME_BYTES {
            return Err(Invalid::new(
                f,
                format!("filename is {} bytes long; at most {MAX_FILE_NAME_BYTES} are allowed.", name.len()),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn display(&self) -> &str {
        &self.0
    }

    /// ASCII letters, digits, `.`, `-`, `_` only; everything else becomes `_`;
    /// leading dots are dropped so the result is never hidden or relative.
    pub fn ascii_fallback(&self) -> String {
        let mapped: String = self
            .0
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
            .collect();
        let trimmed = mapped.trim_start_matches('.');
        if trimmed.is_empty() {
            "file".to_owned()
        } else {
            trimmed.to_owned()
        }
    }
}

impl TryFrom<String> for FileName {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        FileName::parse(&s)
    }
}
impl From<FileName> for String {
    fn from(f: FileName) -> String {
        f.0
    }
}

/// A media type's essence (`type/subtype`, lowercase, parameters dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentType(String);

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 127 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

impl ContentType {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.split_once('/') {
            Some((t, s)) if is_token(t) && is_token(s) => Ok(Self(essence)),
            _ => Err(Invalid::new(
                "content_type",
                format!("'{}' is not a media type like 'image/jpeg'.", raw.escape_debug()),
            )),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn top_level(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }
}
impl TryFrom<String> for ContentType {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        ContentType::parse(&s)
    }
}
impl From<ContentType> for String {
    fn from(c: ContentType) -> String {
        c.0
    }
}
impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest. Accepted as 64 hex characters or standard base64 (as S3 shows it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let bytes = if raw.len() == 64 {
            hex::decode(raw).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(raw).ok()
        };
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(d) => Ok(Self(d)),
            None => Err(Invalid::new(
                field,
                format!("{field} must be a SHA-256 digest: 64 hex characters or 44 base64 characters."),
            )),
        }
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256Digest::parse("sha256", &s).map_err(serde::de::Error::custom)
    }
}

/// An S3 ETag as a client reports it; stored without surrounding quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ETag(String);

impl ETag {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let t = raw.trim().trim_matches('"');
        if t.is_empty() || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return Err(Invalid::new("etag", "etag must be the ETag header S3 returned for the part."));
        }
        Ok(Self(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The quoted form S3 expects in CompleteMultipartUpload.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}
impl TryFrom<String> for ETag {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        ETag::parse(&s)
    }
}
impl From<ETag> for String {
    fn from(e: ETag) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_size_edges() {
        assert!(ByteSize::new(0).is_ok());
        assert!(ByteSize::new(S3_MAX_OBJECT_SIZE).is_ok());
        assert!(ByteSize::new(S3_MAX_OBJECT_SIZE + 1).is_err());
        assert_eq!(S3_MAX_OBJECT_SIZE, 53_687_091_200_000);
        let neg: Result<ByteSize, _> = serde_json::from_str("-1");
        assert!(neg.unwrap_err().to_string().contains("negative"));
        let huge: Result<ByteSize, _> = serde_json::from_str("1e30");
        assert!(huge.is_err());
        let frac: Result<ByteSize, _> = serde_json::from_str("1.5");
        assert!(frac.is_err());
    }

    #[test]
    fn part_number_edges() {
        assert!(PartNumber::new(0).is_err());
        assert_eq!(PartNumber::new(1).unwrap().get(), 1);
        assert_eq!(PartNumber::new(10_000).unwrap().get(), 10_000);
        assert!(PartNumber::new(10_001).is_err());
        assert!(serde_json::from_str::<PartNumber>("-3").is_err());
        assert!(serde_json::from_str::<PartNumber>("10001").is_err());
        assert_eq!(serde_json::from_str::<PartNumber>("7").unwrap().get(), 7);
    }

    #[test]
    fn upload_id_shape() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        assert!(UploadId::parse("../../etc").is_err());
        assert!(UploadId::parse(&"A".repeat(32)).is_err());
        assert!(UploadId::parse("").is_err());
    }

    #[test]
    fn file_names_refused() {
        for bad in [
            "../../etc/passwd",
            "a/b.txt",
            "C:\\Windows\\x.exe",
            "bad\0name.jpg",
            "line\nbreak.txt",
            "tab\there",
            "photo\u{202E}gpj.exe",
            "x\u{2066}y",
            "zero\u{200B}width",
            "",
            "   ",
            ".",
            "..",
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(FileName::parse(&"a".repeat(255)).is_ok());
        assert!(FileName::parse(&"a".repeat(256)).is_err());
        // 4-byte characters count in bytes, not chars.
        assert!(FileName::parse(&"😀".repeat(64)).is_err());
    }

    #[test]
    fn file_names_kept_and_sanitized() {
        let n = FileName::parse("  Résumé \"final\" (2).pdf ").unwrap();
        assert_eq!(n.display(), "Résumé \"final\" (2).pdf");
        assert_eq!(n.ascii_fallback(), "R_sum___final___2_.pdf");
        assert_eq!(FileName::parse(".hidden").unwrap().ascii_fallback(), "hidden");
        assert_eq!(FileName::parse("...").unwrap().ascii_fallback(), "file");
        assert_eq!(FileName::parse("..foo").unwrap().display(), "..foo");
    }

    #[test]
    fn content_types() {
        assert_eq!(ContentType::parse("Image/JPEG; charset=x").unwrap().as_str(), "image/jpeg");
        assert!(ContentType::parse("jpeg").is_err());
        assert!(ContentType::parse("image/").is_err());
        assert!(ContentType::parse("image/jp eg").is_err());
        assert!(ContentType::parse("image/jpeg\r\nx: y").is_err());
    }

    #[test]
    fn sha256_both_encodings() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = Sha256Digest::parse("sha256", hex).unwrap();
        assert_eq!(d.to_base64(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(Sha256Digest::parse("sha256", &d.to_base64()).unwrap(), d);
        assert!(Sha256Digest::parse("sha256", "xyz").is_err());
        assert!(Sha256Digest::parse("sha256", &hex[..62]).is_err());
    }

    #[test]
    fn etags() {
        assert_eq!(ETag::parse("\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(ETag::parse("abc").unwrap().quoted(), "\"abc\"");
        assert!(ETag::parse("").is_err());
        assert!(ETag::parse("a b").is_err());
    }
}
