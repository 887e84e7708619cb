//! Image references: parsing, Docker-style normalisation
//! (`hello` = `docker.io/library/hello:latest`), `file://` URLs, and which
//! registries are spoken to in plain HTTP.

use crate::ImageError;
use oci_client::Reference;
use std::net::IpAddr;
use std::path::PathBuf;

/// Where a pull reads a module from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Oci(Name),
    /// `file:///abs/path.wasm`; the URL, verbatim, is the image's tag.
    File {
        url: String,
        path: PathBuf,
    },
}

/// A parsed OCI reference with its normalised names.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub reference: Reference,
    /// `registry/repository`, e.g. `localhost:5000/shoal/hello`.
    pub repo: String,
    /// `registry/repository:tag`, unless the reference names a digest.
    pub tag: Option<String>,
    /// `registry/repository@sha256:...`, if the reference names a digest.
    pub digest: Option<String>,
}

impl Name {
    /// The reference as the store records it: the repo digest if there is
    /// one (a digest wins over a tag, as in Docker), else the tag.
    pub fn normalised(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| self.repo.clone())
    }
}

/// Parses a pull reference: an OCI reference or a `file://` URL.
pub(crate) fn source(reference: &str) -> Result<Source, ImageError> {
    match reference.strip_prefix("file://") {
        Some(rest) => {
            let path = PathBuf::from(rest);
            if !path.is_absolute() {
                return Err(invalid(
                    reference,
                    "a file reference needs an absolute path: file:///abs/path/module.wasm",
                ));
            }
            Ok(Source::File {
                url: reference.to_owned(),
                path,
            })
        }
        None => name(reference).map(Source::Oci),
    }
}

/// Parses and normalises an OCI reference.
pub(crate) fn name(reference: &str) -> Result<Name, ImageError> {
    if reference.contains("://") {
        return Err(invalid(
            reference,
            "give a registry reference without a scheme (e.g. localhost:5000/app:v1), or file:///abs/path.wasm",
        ));
    }
    let parsed: Reference = reference.parse().map_err(|e: oci_client::ParseError| {
        invalid(
            reference,
            &format!("{e}; expected [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], lowercase repository"),
        )
    })?;
    if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(reference, "the repository name must be lowercase"));
    }
    let repo = format!("{}/{}", parsed.registry(), parsed.repository());
    let (tag, digest) = match parsed.digest() {
        Some(d) => (None, Some(format!("{repo}@{d}"))),
        None => (
            Some(format!("{repo}:{}", parsed.tag().unwrap_or("latest"))),
            None,
        ),
    };
    Ok(Name {
        reference: parsed,
        repo,
        tag,
        digest,
    })
}

/// Parses an import name, `NAME[:TAG]`: a reference without a digest.
pub(crate) fn import_name(name: &str) -> Result<Name, ImageError> {
    if name.starts_with("file://") {
        return Err(invalid(name, "an import name is NAME:TAG, not a file URL"));
    }
    let parsed = self::name(name)?;
    if parsed.digest.is_some() {
        return Err(invalid(
            name,
            "an import name is NAME:TAG; the digest is the module's own",
        ));
    }
    Ok(parsed)
}

fn invalid(reference: &str, reason: &str) -> ImageError {
    ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Whether `registry` (`host[:port]`) is spoken to in plain HTTP: loopback
/// hosts always (as Docker's default insecure 127.0.0.0/8), and those named
/// in `insecure` (by `host` or `host:port`).
pub(crate) fn plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    if insecure.iter().any(|i| i == registry || i == host) {
        return true;
    }
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host` of `host[:port]` or `[v6][:port]`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_as_docker_does() {
        let cases = [
            ("hello", Some("docker.io/library/hello:latest"), None),
            (
                "localhost:5000/shoal/hello:v1",
                Some("localhost:5000/shoal/hello:v1"),
                None,
            ),
            ("ghcr.io/x/y", Some("ghcr.io/x/y:latest"), None),
        ];
        for (input, tag, digest) in cases {
            let n = name(input).unwrap();
            assert_eq!(n.tag.as_deref(), tag, "{input}");
            assert_eq!(n.digest.as_deref(), digest, "{input}");
        }
        let hex = "a".repeat(64);
        let n = name(&format!("ghcr.io/x/y:v2@sha256:{hex}")).unwrap();
        assert_eq!(n.tag, None, "a digest wins over a tag");
        assert_eq!(n.digest.unwrap(), format!("ghcr.io/x/y@sha256:{hex}"));
        assert_eq!(n.repo, "ghcr.io/x/y");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for bad in [
            "",
            "Upper/Case",
            "Upper/case",
            "a b",
            "x@sha256:short",
            "https://ghcr.io/x/y",
            "repo:",
        ] {
            let err = name(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidReference { .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(matches!(
            source("file://relative/x.wasm"),
            Err(ImageError::InvalidReference { .. })
        ));
        assert!(matches!(
            import_name(&format!("x@sha256:{}", "b".repeat(64))),
            Err(ImageError::InvalidReference { .. })
        ));
        assert!(matches!(
            source("file:///abs/x.wasm"),
            Ok(Source::File { .. })
        ));
    }

    #[test]
    fn loopback_registries_speak_plain_http() {
        for plain in [
            "localhost:5000",
            "localhost",
            "127.0.0.1:5000",
            "127.8.9.1",
            "[::1]:5000",
        ] {
            assert!(plain_http(plain, &[]), "{plain}");
        }
        for tls in [
            "ghcr.io",
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com:5000",
        ] {
            assert!(!plain_http(tls, &[]), "{tls}");
        }
        assert!(plain_http("10.0.0.1:5000", &["10.0.0.1".to_owned()]));
        assert!(plain_http("reg.lan:80", &["reg.lan:80".to_owned()]));
        assert!(!plain_http("reg.lan:443", &["reg.lan:80".to_owned()]));
    }
}
