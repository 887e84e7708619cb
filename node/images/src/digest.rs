//! Content digests (`sha256:<hex>` and the other algorithms OCI allows):
//! hashing while bytes stream past, and checking digest strings.

use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// Hashes bytes for one digest algorithm.
#[derive(Debug, Clone)]
pub(crate) enum Digester {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Digester {
    /// The digester for the algorithm of `digest` (`ALG:HEX`), if supported.
    pub(crate) fn for_digest(digest: &str) -> Option<Digester> {
        let (alg, hex) = digest.split_once(':')?;
        let (digester, len) = match alg {
            "sha256" => (Digester::Sha256(Sha256::new()), 64),
            "sha384" => (Digester::Sha384(Sha384::new()), 96),
            "sha512" => (Digester::Sha512(Sha512::new()), 128),
            _ => return None,
        };
        is_lower_hex(hex, len).then_some(digester)
    }

    pub(crate) fn sha256() -> Digester {
        Digester::Sha256(Sha256::new())
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Digester::Sha256(d) => d.update(bytes),
            Digester::Sha384(d) => d.update(bytes),
            Digester::Sha512(d) => d.update(bytes),
        }
    }

    /// `ALG:HEX`.
    pub(crate) fn finish(self) -> String {
        match self {
            Digester::Sha256(d) => format!("sha256:{}", hex(&d.finalize())),
            Digester::Sha384(d) => format!("sha384:{}", hex(&d.finalize())),
            Digester::Sha512(d) => format!("sha512:{}", hex(&d.finalize())),
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The hex of a `sha256:<64 lowercase hex>` digest, if `digest` is one.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| is_lower_hex(hex, 64))
}

pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_and_computed() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256(b""), empty);
        let mut d = Digester::for_digest(empty).unwrap();
        d.update(b"");
        assert_eq!(d.finish(), empty);
        assert!(sha256_hex(empty).is_some());
        assert!(sha256_hex("sha256:ABC").is_none());
        assert!(Digester::for_digest("md5:abcd").is_none());
        assert!(Digester::for_digest("sha256:short").is_none());
        assert!(Digester::for_digest(&format!("sha512:{}", "0".repeat(128))).is_some());
    }
}
