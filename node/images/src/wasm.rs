//! The Wasm binary header: what tells a core module from a component from
//! anything else. Only the header is checked here; compiling is the
//! runtime's job.

/// The bytes a Wasm binary starts with.
pub(crate) const MAGIC: &[u8; 4] = b"\0asm";
/// How many bytes [`kind`] needs.
pub(crate) const HEADER_LEN: usize = 8;

/// What a Wasm binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A core module (WASI preview 1).
    Module,
    /// A component (WASI 0.2).
    Component,
}

impl Kind {
    /// The OCI platform `os` of the Wasm OCI artifact config.
    pub(crate) fn os(self) -> &'static str {
        match self {
            Kind::Module => "wasip1",
            Kind::Component => "wasip2",
        }
    }
}

/// Reads the header (the first [`HEADER_LEN`] bytes, or fewer if that is all
/// there is); the error says what is wrong with it.
pub(crate) fn kind(header: &[u8]) -> Result<Kind, String> {
    if header.len() < HEADER_LEN {
        return Err(format!(
            "it is {} bytes long, shorter than a Wasm header",
            header.len()
        ));
    }
    if &header[..4] != MAGIC {
        return Err(format!(
            "it does not start with the Wasm magic bytes \\0asm (it starts with {:02x?})",
            &header[..4]
        ));
    }
    match header[4..8] {
        [1, 0, 0, 0] => Ok(Kind::Module),
        [_, _, 1, 0] => Ok(Kind::Component),
        _ => Err(format!(
            "its Wasm version {:02x?} is neither a core module (1) nor a component",
            &header[4..8]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert_eq!(kind(b"\0asm\x01\0\0\0rest"), Ok(Kind::Module));
        assert_eq!(kind(b"\0asm\x0d\0\x01\0"), Ok(Kind::Component));
        assert!(kind(b"\0asm").unwrap_err().contains("shorter"));
        assert!(
            kind(b"\x7fELF\x02\x01\x01\0")
                .unwrap_err()
                .contains("magic")
        );
        assert!(kind(b"\0asm\x02\0\0\0").unwrap_err().contains("version"));
    }
}
