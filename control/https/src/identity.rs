//! Who is calling: a verified client certificate read as Kubernetes
//! authentication reads it (CN the user, each O a group), or anonymous.

use x509_parser::error::X509Error;

/// The user of a connection without a client certificate.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of every unauthenticated caller.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group of every authenticated caller.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Who is calling, as Kubernetes authentication reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Identity {
        Identity {
            user: ANONYMOUS_USER.to_string(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user == ANONYMOUS_USER
    }
}

/// Why a client certificate names no usable identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("client certificate is not valid X.509")]
    Parse(#[source] X509Error),
    #[error("client certificate has no common name")]
    NoCommonName,
    #[error("client certificate subject is not UTF-8")]
    NotUtf8(#[source] X509Error),
}

/// Reads a (verified) client certificate: CN is the user, each O a group,
/// plus `system:authenticated`.
pub fn identity_from_cert(der: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        IdentityError::Parse(match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })
    })?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .ok_or(IdentityError::NoCommonName)?
        .as_str()
        .map_err(IdentityError::NotUtf8)?;
    if user.is_empty() {
        return Err(IdentityError::NoCommonName);
    }
    let mut groups = subject
        .iter_organization()
        .map(|o| o.as_str().map(str::to_string))
        .collect::<Result<Vec<_>, _>>()
        .map_err(IdentityError::NotUtf8)?;
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    Ok(Identity {
        user: user.to_string(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            identity_from_cert(b"not DER"),
            Err(IdentityError::Parse(_))
        ));
    }

    #[test]
    fn anonymous_is_unauthenticated() {
        let anon = Identity::anonymous();
        assert!(anon.is_anonymous());
        assert_eq!(anon.groups, [UNAUTHENTICATED_GROUP]);
    }
}
