//! Signed, expiring download links, and safe Content-Disposition headers.
//!
//! A link is `/d/{id}?v=<file|thumb>&e=<unix expiry>&d=<a|i>&g=<generation>&k=<key id>&s=<signature>`,
//! where the signature is HMAC-SHA256 over every other field, base64url. Keys rotate:
//! the first configured key signs, every configured key verifies, so links made with
//! the previous key keep working while it is still listed. Verification is constant-time.
//! The generation is the file's link generation when the link was made: deleting a
//! file bumps it, so no link made before a delete works again after a restore. A link
//! whose expiry lies further ahead than the configured maximum lifetime is refused at
//! verification too (lowering the maximum cuts links already handed out).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::UploadId;

type HmacSha256 = Hmac<Sha256>;

/// Which object a link serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    File,
    Thumbnail,
}

impl Variant {
    fn code(self) -> &'static str {
        match self {
            Variant::File => "file",
            Variant::Thumbnail => "thumb",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Variant::File),
            "thumb" => Some(Variant::Thumbnail),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Attachment,
    Inline,
}

impl Disposition {
    fn code(self) -> &'static str {
        match self {
            Disposition::Attachment => "a",
            Disposition::Inline => "i",
        }
    }
    fn parse_code(s: &str) -> Option<Self> {
        match s {
            "a" => Some(Disposition::Attachment),
            "i" => Some(Disposition::Inline),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "attachment" => Some(Disposition::Attachment),
            "inline" => Some(Disposition::Inline),
            _ => None,
        }
    }
}

/// One signing key with its id.
#[derive(Clone)]
pub struct LinkKey {
    pub id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkKey({}, <redacted>)", self.id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("HOIST_LINK_KEYS: {0}")]
pub struct KeyError(String);

/// The key ring: the first key signs, all verify.
#[derive(Debug, Clone)]
pub struct LinkKeys {
    keys: Vec<LinkKey>,
}

impl LinkKeys {
    /// Parses `kid:secret,kid:secret` (secrets base64, at least 32 bytes each). A lone
    /// value without `kid:` (as a freshly generated secret is) is key `k0`, its raw bytes
    /// the secret.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !item.contains(':') {
                if item.len() < 32 {
                    return Err(KeyError("a bare secret must be at least 32 characters".into()));
                }
                keys.push(LinkKey { id: "k0".into(), secret: item.as_bytes().to_vec() });
                continue;
            }
            let (id, secret) = item
                .split_once(':')
                .ok_or_else(|| KeyError(format!("'{}' is not kid:secret", item.split(':').next().unwrap_or(""))))?;
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(KeyError(format!("key id '{id}' must be 1-32 letters, digits, - or _")));
            }
            let secret = base64::engine::general_purpose::STANDARD
                .decode(secret)
                .or_else(|_| URL_SAFE_NO_PAD.decode(secret))
                .map_err(|_| KeyError(format!("key {id}: secret is not base64")))?;
            if secret.len() < 32 {
                return Err(KeyError(format!("key {id}: secret must be at least 32 bytes")));
            }
            keys.push(LinkKey { id: id.to_owned(), secret });
        }
        if keys.is_empty() {
            return Err(KeyError("no keys".into()));
        }
        Ok(Self { keys })
    }

    fn mac(key: &LinkKey, message: &str) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(message.as_bytes());
        mac
    }

    fn message(link: &Link, kid: &str) -> String {
        format!(
            "hoist-link-v2\n{}\n{}\n{}\n{}\n{}\n{kid}",
            link.id,
            link.variant.code(),
            link.expires,
            link.disposition.code(),
            link.generation
        )
    }

    /// The path and query of a link (append to the API's base URL).
    pub fn sign(&self, link: &Link) -> String {
        let key = &self.keys[0];
        let sig = URL_SAFE_NO_PAD.encode(Self::mac(key, &Self::message(link, &key.id)).finalize().into_bytes());
        format!(
            "/d/{}?v={}&e={}&d={}&g={}&k={}&s={sig}",
            link.id,
            link.variant.code(),
            link.expires,
            link.disposition.code(),
            link.generation,
            key.id
        )
    }

    /// Verifies a link's fields; `Ok` only for an authentic, unexpired link that expires
    /// within `max_lifetime_secs` of `now` (a minute's clock skew allowed).
    pub fn verify(
        &self,
        raw_id: &str,
        query: &LinkQuery<'_>,
        now: i64,
        max_lifetime_secs: i64,
    ) -> Result<Link, LinkError> {
        let id = UploadId::parse(raw_id).map_err(|_| LinkError::Invalid)?;
        let variant = query.v.and_then(Variant::parse).ok_or(LinkError::Invalid)?;
        let disposition = query.d.and_then(Disposition::parse_code).ok_or(LinkError::Invalid)?;
        let expires: i64 = query.e.and_then(|e| e.parse().ok()).ok_or(LinkError::Invalid)?;
        let generation: u32 = query.g.and_then(|g| g.parse().ok()).ok_or(LinkError::Invalid)?;
        let kid = query.k.ok_or(LinkError::Invalid)?;
        let sig = query.s.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).ok_or(LinkError::Invalid)?;
        let key = self.keys.iter().find(|k| k.id == kid).ok_or(LinkError::Invalid)?;
        let link = Link { id, variant, expires, disposition, generation };
        Self::mac(key, &Self::message(&link, kid)).verify_slice(&sig).map_err(|_| LinkError::Invalid)?;
        // Expiry is checked after the signature so an attacker learns nothing from it.
        if now >= expires {
            return Err(LinkError::Expired);
        }
        if expires - now > max_lifetime_secs + MAX_CLOCK_SKEW_SECS {
            return Err(LinkError::Invalid);
        }
        Ok(link)
    }
}

/// The raw query fields of a link.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkQuery<'a> {
    pub v: Option<&'a str>,
    pub e: Option<&'a str>,
    pub d: Option<&'a str>,
    pub g: Option<&'a str>,
    pub k: Option<&'a str>,
    pub s: Option<&'a str>,
}

/// What a link grants: one variant of one file, until `expires`, while the file's link
/// generation is still `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: UploadId,
    pub variant: Variant,
    pub expires: i64,
    pub disposition: Disposition,
    pub generation: u32,
}

/// How far a link's expiry may lie past the maximum lifetime (clocks differ).
const MAX_CLOCK_SKEW_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link has expired")]
    Expired,
}

/// `Content-Disposition` per RFC 6266, with an ASCII `filename` fallback and the real
/// name in RFC 5987 `filename*`. No quote, backslash, control character or path part
/// of the name can reach the header.
/// How a file of `content_type` is actually served: types a browser would run as a
/// document (XML and its kin: XSLT can script the page) are always downloads, whatever
/// the link asks for.
pub fn served_disposition(content_type: &str, asked: Disposition) -> Disposition {
    let ct = content_type.to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    let renders_as_document = matches!(essence, "text/xml" | "application/xml" | "text/xsl" | "application/xslt+xml")
        || essence.ends_with("+xml");
    if renders_as_document {
        Disposition::Attachment
    } else {
        asked
    }
}

pub fn content_disposition(disposition: Disposition, name: &str) -> String {
    let kind = match disposition {
        Disposition::Attachment => "attachment",
        Disposition::Inline => "inline",
    };
    // The last path component only, then ASCII-safe characters only.
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let fallback: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')') { c } else { '_' })
        .collect();
    let fallback = fallback.trim_start_matches('.').trim();
    let fallback = if fallback.is_empty() { "download" } else { fallback };
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let encoded: String = percent_encoding::utf8_percent_encode(clean.trim_start_matches('.'), ATTR_CHAR).to_string();
    let encoded = if encoded.is_empty() { "download".to_owned() } else { encoded };
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// RFC 5987 attr-char: everything else is percent-encoded.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str =
        "k2:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=,k1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn query(link: &str) -> (String, Vec<(String, String)>) {
        let (path, q) = link.split_once('?').unwrap();
        let id = path.strip_prefix("/d/").unwrap().to_owned();
        (id, q.split('&').map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap()).collect())
    }

    const DAY: i64 = 86_400;

    fn verify(keys: &LinkKeys, id: &str, pairs: &[(String, String)], now: i64) -> Result<Link, LinkError> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let q = LinkQuery { v: get("v"), e: get("e"), d: get("d"), g: get("g"), k: get("k"), s: get("s") };
        keys.verify(id, &q, now, DAY)
    }

    fn link(id: &UploadId, expires: i64, disposition: Disposition) -> Link {
        Link { id: id.clone(), variant: Variant::File, expires, disposition, generation: 0 }
    }

    /// Issue 11.7: a link is bound to the file's link generation, and its lifetime is
    /// capped at verification, whatever it says.
    #[test]
    fn generation_is_signed_and_lifetime_is_capped() {
        let keys = LinkKeys::parse(KEYS).unwrap();
        let id = UploadId::generate();
        let signed = keys.sign(&Link { generation: 3, ..link(&id, 1_000, Disposition::Attachment) });
        let (raw_id, pairs) = query(&signed);
        assert_eq!(verify(&keys, &raw_id, &pairs, 999).unwrap().generation, 3);
        let far = keys.sign(&link(&id, 10 * DAY, Disposition::Attachment));
        let (raw_id, pairs) = query(&far);
        assert_eq!(verify(&keys, &raw_id, &pairs, 0), Err(LinkError::Invalid), "beyond the maximum lifetime");
        assert!(verify(&keys, &raw_id, &pairs, 9 * DAY).is_ok(), "within it once time has passed");
    }

    #[test]
    fn round_trip_tamper_expiry_rotation() {
        let keys = LinkKeys::parse(KEYS).unwrap();
        let id = UploadId::generate();
        let signed = keys.sign(&link(&id, 1_000, Disposition::Attachment));
        let (raw_id, pairs) = query(&signed);
        let ok = verify(&keys, &raw_id, &pairs, 999).unwrap();
        assert_eq!((ok.id, ok.variant, ok.disposition), (id.clone(), Variant::File, Disposition::Attachment));
        assert_eq!(verify(&keys, &raw_id, &pairs, 1_000), Err(LinkError::Expired));
        // Tamper with every field in turn.
        for i in 0..pairs.len() {
            let mut p = pairs.clone();
            p[i].1 = match p[i].0.as_str() {
                "v" => "thumb".into(),
                "e" => "99999".into(),
                "d" => "i".into(),
                "g" => "1".into(),
                "k" => "k1".into(),
                _ => {
                    let mut s = p[i].1.clone();
                    let last = s.pop().unwrap();
                    s.push(if last == 'A' { 'B' } else { 'A' });
                    s
                }
            };
            assert_eq!(verify(&keys, &raw_id, &p, 0), Err(LinkError::Invalid), "tampered {}", p[i].0);
        }
        let other = UploadId::generate();
        assert_eq!(verify(&keys, other.as_str(), &pairs, 0), Err(LinkError::Invalid));
        // Truncated: drop a field.
        assert_eq!(verify(&keys, &raw_id, &pairs[..pairs.len() - 1], 0), Err(LinkError::Invalid));
        // Rotation: a ring whose new key comes first still verifies links of the old one.
        let rotated =
            LinkKeys::parse(&format!("k3:{},{}", "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU=", KEYS)).unwrap();
        assert!(verify(&rotated, &raw_id, &pairs, 0).is_ok());
        assert!(rotated.sign(&link(&id, 5, Disposition::Inline)).contains("k=k3"));
        // Once the old key is removed, its links die.
        let only_new = LinkKeys::parse("k3:YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU=").unwrap();
        assert_eq!(verify(&only_new, &raw_id, &pairs, 0), Err(LinkError::Invalid));
    }

    #[test]
    fn key_ring_parsing() {
        assert!(LinkKeys::parse("").is_err());
        assert!(LinkKeys::parse("k1:c2hvcnQ=").is_err(), "short secrets refused");
        assert!(LinkKeys::parse("bad id:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").is_err());
        assert!(LinkKeys::parse("nocolon").is_err(), "a bare secret must be long");
        let bare = LinkKeys::parse("Zq8yV3rN0pLm4Kc7Tx2Bw9Hd6Jf1Sg5A3Qe8Ru0Y").unwrap();
        assert!(bare.sign(&link(&UploadId::generate(), 9, Disposition::Attachment)).contains("k=k0"));
    }

    #[test]
    fn content_disposition_is_safe() {
        let cd = content_disposition(Disposition::Attachment, "..résumé \"final\"\r\nX-Evil: 1.pdf");
        assert!(!cd.contains('\r') && !cd.contains('\n'));
        assert!(cd.starts_with("attachment; filename=\""));
        let fallback = cd.split('"').nth(1).unwrap();
        assert!(fallback.is_ascii() && !fallback.contains('"') && !fallback.starts_with('.'), "{cd}");
        assert!(cd.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22X-Evil%3A%201.pdf"), "{cd}");
        assert_eq!(
            content_disposition(Disposition::Inline, "a/b/../c.txt"),
            "inline; filename=\"c.txt\"; filename*=UTF-8''c.txt"
        );
        assert_eq!(
            content_disposition(Disposition::Attachment, ".."),
            "attachment; filename=\"download\"; filename*=UTF-8''download"
        );
        assert!(content_disposition(Disposition::Attachment, "日本語.txt").contains("filename=\"___.txt\""));
    }

    #[test]
    fn xml_is_never_served_inline() {
        for ct in
            ["text/xml", "application/xml", "application/xslt+xml", "application/rss+xml", "Text/XML; charset=utf-8"]
        {
            assert_eq!(served_disposition(ct, Disposition::Inline), Disposition::Attachment, "{ct}");
        }
        assert_eq!(served_disposition("image/png", Disposition::Inline), Disposition::Inline);
        assert_eq!(served_disposition("text/plain", Disposition::Attachment), Disposition::Attachment);
    }
}
