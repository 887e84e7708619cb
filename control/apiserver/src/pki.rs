//! The cluster's certificates, made at first start as kubeadm and k3s make them.
//!
//! `DIR/pki` (mode 0700) holds one CA (`ca.crt`, `ca.key`), the apiserver's
//! serving pair (`apiserver.crt`, `apiserver.key`), the admin client pair
//! (`admin.crt`, `admin.key`: CN `shoal-admin`, O `system:masters`) and the
//! pair the apiserver presents to kubelets (`apiserver-kubelet-client.crt`,
//! `.key`: CN `kube-apiserver-kubelet-client`, O `system:masters`). Keys are
//! ECDSA P-256, PKCS#8 PEM, mode 0600; files are written atomically.
//!
//! The CA is never replaced: a missing half or an unreadable file is an error
//! naming the file. A leaf pair is re-issued by the same CA when it is missing,
//! not signed by that CA, within 90 days of expiry, or (serving) lacks a
//! requested host; a re-issued serving cert keeps the hosts it had.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::{PEMError, X509Error};
use x509_parser::extensions::GeneralName;

/// The admin identity written into `admin.kubeconfig`.
pub const ADMIN_USER: &str = "shoal-admin";
/// The group that Kubernetes authorizes for everything.
pub const ADMIN_GROUP: &str = "system:masters";
/// The identity the apiserver presents to kubelets (logs, exec), as kubeadm names it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The group of every node's client certificate.
pub const NODES_GROUP: &str = "system:nodes";
/// A node's user name is this prefix and the node name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Hosts the apiserver's serving certificate always covers.
pub const DEFAULT_HOSTS: [&str; 7] = [
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

const CA_DAYS: u32 = 3650;
const LEAF_DAYS: u32 = 365;
const RENEW_WITHIN: Duration = Duration::from_secs(90 * 86_400);
const BACKDATE: Duration = Duration::from_secs(3600);
const SERVING_CN: &str = "kube-apiserver";
const KUBECONFIG_NAME: &str = "shoal";

/// Why certificates could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a usable PEM certificate; restore it, or delete it to have it re-created", path.display())]
    BadCert {
        path: PathBuf,
        #[source]
        source: CertDecodeError,
    },
    #[error("{} is not a usable PEM private key; restore it, or delete it to have it re-created", path.display())]
    BadKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("{} does not belong to the key in {}; restore the matching pair", cert.display(), key.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{} is not a CA certificate", path.display())]
    NotCa { path: PathBuf },
    #[error(
        "{} exists but {} is missing; restore it, or remove both to start a new cluster CA",
        present.display(),
        missing.display()
    )]
    PartialCa { present: PathBuf, missing: PathBuf },
    #[error("{host:?} is neither an IP address nor a DNS name")]
    InvalidHost {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("a serving certificate needs at least one host")]
    NoHosts,
    #[error("a client certificate needs a user name")]
    NoUser,
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("cannot build the TLS configuration")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Why a certificate file could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CertDecodeError {
    #[error("not PEM")]
    Pem(#[source] PEMError),
    #[error("PEM block is {0:?}, not CERTIFICATE")]
    Label(String),
    #[error("not an X.509 certificate")]
    X509(#[source] X509Error),
}

/// The cluster CA and the certificates made from it.
pub struct Pki {
    ca: Ca,
    serving: Leaf,
    admin: Leaf,
    kubelet_client: Leaf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

struct Ca {
    path: PathBuf,
    pem: String,
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

/// The two files of a pair under `DIR/pki`.
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(dir: &Path, stem: &str) -> Files {
        Files {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// What to issue: subject, names, and purpose.
struct Spec<'a> {
    cn: &'a str,
    orgs: &'a [&'a str],
    hosts: &'a [String],
    usage: ExtendedKeyUsagePurpose,
    days: u32,
}

impl Pki {
    /// Loads `DIR/pki/*` or creates what is missing; the serving cert covers
    /// [`DEFAULT_HOSTS`] and `hosts` (unspecified addresses such as `0.0.0.0` are skipped).
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        let dir = dir.join("pki");
        fs::create_dir_all(&dir)
            .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
            .map_err(|source| PkiError::Write {
                path: dir.clone(),
                source,
            })?;
        let (ca, fresh) = load_or_create_ca(&dir)?;

        let mut wanted: Vec<String> = DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect();
        wanted.extend(hosts.iter().cloned());
        let serving = ensure_leaf(
            &ca,
            &Files::new(&dir, "apiserver"),
            fresh,
            Spec {
                cn: SERVING_CN,
                orgs: &[],
                hosts: &canonical_hosts(&wanted),
                usage: ExtendedKeyUsagePurpose::ServerAuth,
                days: LEAF_DAYS,
            },
        )?;
        let admin = ensure_leaf(
            &ca,
            &Files::new(&dir, "admin"),
            fresh,
            Spec {
                cn: ADMIN_USER,
                orgs: &[ADMIN_GROUP],
                hosts: &[],
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                days: LEAF_DAYS,
            },
        )?;
        let kubelet_client = ensure_leaf(
            &ca,
            &Files::new(&dir, "apiserver-kubelet-client"),
            fresh,
            Spec {
                cn: KUBELET_CLIENT_USER,
                orgs: &[ADMIN_GROUP],
                hosts: &[],
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                days: LEAF_DAYS,
            },
        )?;
        Ok(Pki {
            ca,
            serving,
            admin,
            kubelet_client,
        })
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca.der
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// The apiserver's serving certificate, PEM.
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving.cert_pem
    }

    /// The admin client certificate (`shoal-admin`, `system:masters`), PEM.
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin.cert_pem
    }

    /// The admin client key, PKCS#8 PEM.
    pub fn admin_key_pem(&self) -> &str {
        &self.admin.key_pem
    }

    /// Issues a client certificate signed by the CA: CN = `user`, O = `groups`,
    /// as Kubernetes reads identity. Returns (cert PEM, key PEM).
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
        validity_days: u32,
    ) -> Result<(String, String), PkiError> {
        if user.is_empty() {
            return Err(PkiError::NoUser);
        }
        let leaf = issue(
            &self.ca,
            &Spec {
                cn: user,
                orgs: groups,
                hosts: &[],
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                days: validity_days,
            },
        )?;
        Ok((leaf.cert_pem, leaf.key_pem))
    }

    /// Issues a serving certificate for another component (a kubelet's 10250)
    /// covering `hosts`, CN = the first host. Returns (cert PEM, key PEM).
    pub fn issue_serving(&self, hosts: &[String]) -> Result<(String, String), PkiError> {
        let hosts = canonical_hosts(hosts);
        let cn = hosts.first().ok_or(PkiError::NoHosts)?;
        let leaf = issue(
            &self.ca,
            &Spec {
                cn,
                orgs: &[],
                hosts: &hosts,
                usage: ExtendedKeyUsagePurpose::ServerAuth,
                days: LEAF_DAYS,
            },
        )?;
        Ok((leaf.cert_pem, leaf.key_pem))
    }

    /// Issues what a joining node needs: a client certificate for
    /// `system:node:NAME` in `system:nodes`, and a serving certificate for
    /// its kubelet API covering its addresses and name.
    pub fn issue_node(&self, name: &str, addresses: &[IpAddr]) -> Result<NodeCerts, PkiError> {
        let user = format!("{NODE_USER_PREFIX}{name}");
        let (client_cert_pem, client_key_pem) =
            self.issue_client(&user, &[NODES_GROUP], LEAF_DAYS)?;
        let mut hosts: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        hosts.push(name.to_string());
        let (serving_cert_pem, serving_key_pem) = self.issue_serving(&hosts)?;
        Ok(NodeCerts {
            client_cert_pem,
            client_key_pem,
            serving_cert_pem,
            serving_key_pem,
        })
    }

    /// The TLS configuration for connecting to kubelets: their serving
    /// certificates must chain to the cluster CA; the apiserver presents
    /// `kube-apiserver-kubelet-client`; ALPN http/1.1 (exec upgrades).
    pub fn kubelet_client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der.clone()))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.kubelet_client.key_der.clone(),
        ));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(self.kubelet_client.cert_der.clone())],
                key,
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The apiserver's TLS configuration: the serving cert; client certs are
    /// requested but optional, and verified against the CA; ALPN h2, http/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der.clone()))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.serving.key_der.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(self.serving.cert_der.clone())],
                key,
            )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A joining node's certificates, all PEM.
pub struct NodeCerts {
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

impl std::fmt::Debug for NodeCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCerts").finish_non_exhaustive()
    }
}

/// Writes a kubeconfig (JSON, which kubectl and client-go read as YAML) with
/// cluster, user and context all named `shoal`; mode 0600.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), PkiError> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": KUBECONFIG_NAME,
            "cluster": {
                "server": server_url,
                "certificate-authority-data": BASE64.encode(ca_pem),
            },
        }],
        "users": [{
            "name": KUBECONFIG_NAME,
            "user": {
                "client-certificate-data": BASE64.encode(cert_pem),
                "client-key-data": BASE64.encode(key_pem),
            },
        }],
        "contexts": [{
            "name": KUBECONFIG_NAME,
            "context": { "cluster": KUBECONFIG_NAME, "user": KUBECONFIG_NAME },
        }],
        "current-context": KUBECONFIG_NAME,
        "preferences": {},
    });
    write_atomic(path, format!("{config:#}\n").as_bytes(), 0o600)
}

fn load_or_create_ca(dir: &Path) -> Result<(Ca, bool), PkiError> {
    let files = Files::new(dir, "ca");
    match (exists(&files.cert)?, exists(&files.key)?) {
        (true, true) => load_ca(&files).map(|ca| (ca, false)),
        (false, false) => create_ca(&files).map(|ca| (ca, true)),
        (true, false) => Err(PkiError::PartialCa {
            present: files.cert,
            missing: files.key,
        }),
        (false, true) => Err(PkiError::PartialCa {
            present: files.key,
            missing: files.cert,
        }),
    }
}

fn load_ca(files: &Files) -> Result<Ca, PkiError> {
    let (pem, der) = read_cert(&files.cert)?;
    let (_, key) = read_key(&files.key)?;
    let cert = parse_at(&files.cert, &der)?;
    check_key(&cert, &key, files)?;
    if !cert.is_ca() {
        return Err(PkiError::NotCa {
            path: files.cert.clone(),
        });
    }
    if expires_within(&cert, RENEW_WITHIN) {
        tracing::warn!(file = %files.cert.display(), "the cluster CA expires within 90 days");
    }
    let issuer = Issuer::from_ca_cert_pem(&pem, key)?;
    Ok(Ca {
        path: files.cert.clone(),
        pem,
        der,
        issuer,
    })
}

fn create_ca(files: &Files) -> Result<Ca, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("shoal-ca@{}", now_unix()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    set_validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    write_atomic(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&files.cert, pem.as_bytes(), 0o644)?;
    tracing::info!(file = %files.cert.display(), "created the cluster CA");
    let issuer = Issuer::from_ca_cert_pem(&pem, key)?;
    Ok(Ca {
        path: files.cert.clone(),
        pem,
        der: cert.der().to_vec(),
        issuer,
    })
}

/// Loads a leaf pair, or issues it anew when it is missing or stale.
fn ensure_leaf(ca: &Ca, files: &Files, ca_fresh: bool, spec: Spec<'_>) -> Result<Leaf, PkiError> {
    let mut hosts = spec.hosts.to_vec();
    let reason = match (exists(&files.cert)?, exists(&files.key)?) {
        (false, false) => None,
        _ if ca_fresh => Some("the CA is new".to_string()),
        (true, true) => {
            let (cert_pem, cert_der) = read_cert(&files.cert)?;
            let (key_pem, key) = read_key(&files.key)?;
            let cert = parse_at(&files.cert, &cert_der)?;
            check_key(&cert, &key, files)?;
            let present = cert_hosts(&cert);
            let missing: Vec<&String> = hosts.iter().filter(|h| !present.contains(h)).collect();
            let ca_cert = parse_at(&ca.path, &ca.der)?;
            let reason = if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
                "it is not signed by the cluster CA".to_string()
            } else if expires_within(&cert, RENEW_WITHIN) {
                "it expires within 90 days".to_string()
            } else if !missing.is_empty() {
                format!("it lacks {missing:?}")
            } else {
                return Ok(Leaf {
                    cert_pem,
                    key_pem,
                    cert_der,
                    key_der: key.serialize_der(),
                });
            };
            for host in present {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            Some(reason)
        }
        _ => Some("half of the pair is missing".to_string()),
    };
    if let Some(reason) = &reason {
        tracing::info!(file = %files.cert.display(), %reason, "re-issuing certificate");
    }
    let leaf = issue(
        ca,
        &Spec {
            hosts: &hosts,
            ..spec
        },
    )?;
    write_atomic(&files.key, leaf.key_pem.as_bytes(), 0o600)?;
    write_atomic(&files.cert, leaf.cert_pem.as_bytes(), 0o644)?;
    Ok(leaf)
}

fn issue(ca: &Ca, spec: &Spec<'_>) -> Result<Leaf, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for org in spec.orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.distinguished_name.push(DnType::CommonName, spec.cn);
    params.subject_alt_names = spec
        .hosts
        .iter()
        .map(|host| san(host))
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![spec.usage.clone()];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, spec.days);
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

fn san(host: &str) -> Result<SanType, PkiError> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => host
            .try_into()
            .map(SanType::DnsName)
            .map_err(|source| PkiError::InvalidHost {
                host: host.to_string(),
                source,
            }),
    }
}

/// Canonical, de-duplicated hosts: IPs in standard form, DNS names lowercase;
/// empty entries and unspecified addresses dropped.
fn canonical_hosts(hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for host in hosts {
        let host = host.trim();
        let host = match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => continue,
            Ok(ip) => ip.to_string(),
            Err(_) if host.is_empty() => continue,
            Err(_) => host.to_ascii_lowercase(),
        };
        if !out.contains(&host) {
            out.push(host);
        }
    }
    out
}

/// The hosts a certificate covers, in [`canonical_hosts`] form.
fn cert_hosts(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| Ipv4Addr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn read_cert(path: &Path) -> Result<(String, Vec<u8>), PkiError> {
    let pem = read(path)?;
    let bad = |source| PkiError::BadCert {
        path: path.to_path_buf(),
        source,
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(CertDecodeError::Pem(nom_inner(e, PEMError::IncompletePEM))))?;
    if block.label != "CERTIFICATE" {
        return Err(bad(CertDecodeError::Label(block.label)));
    }
    parse_at(path, &block.contents)?;
    Ok((pem, block.contents))
}

/// Parses DER read from `path`, naming the file on error.
fn parse_at<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    parse_der(der).map_err(|source| PkiError::BadCert {
        path: path.to_path_buf(),
        source,
    })
}

fn read_key(path: &Path) -> Result<(String, KeyPair), PkiError> {
    let pem = read(path)?;
    let key = KeyPair::from_pem(&pem).map_err(|source| PkiError::BadKey {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((pem, key))
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, CertDecodeError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CertDecodeError::X509(nom_inner(e, X509Error::InvalidCertificate)))
}

fn nom_inner<E>(err: x509_parser::nom::Err<E>, incomplete: E) -> E {
    match err {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => incomplete,
    }
}

fn check_key(cert: &X509Certificate<'_>, key: &KeyPair, files: &Files) -> Result<(), PkiError> {
    if *cert.public_key().subject_public_key.data == *rcgen::PublicKeyData::der_bytes(key) {
        Ok(())
    } else {
        Err(PkiError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        })
    }
}

fn expires_within(cert: &X509Certificate<'_>, window: Duration) -> bool {
    let deadline = now_unix().saturating_add(window.as_secs());
    cert.validity().not_after.timestamp() < i64::try_from(deadline).unwrap_or(i64::MAX)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(now_unix());
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let write = || -> io::Result<()> {
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn verify_server(ca_pem: &str, cert_pem: &str, host: &str) -> anyhow::Result<()> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(pem_der(ca_pem)))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        let cert = CertificateDer::from(pem_der(cert_pem));
        let name = ServerName::try_from(host.to_string())?;
        verifier.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())?;
        Ok(())
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn load_or_create_twice_keeps_everything() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = Pki::load_or_create(dir.path(), &[])?;
        let second = Pki::load_or_create(dir.path(), &[])?;
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.serving_cert_pem(), second.serving_cert_pem());
        assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
        assert_eq!(first.admin_key_pem(), second.admin_key_pem());

        let pki = dir.path().join("pki");
        assert_eq!(mode(&pki), 0o700);
        for key in [
            "ca.key",
            "apiserver.key",
            "admin.key",
            "apiserver-kubelet-client.key",
        ] {
            assert_eq!(mode(&pki.join(key)), 0o600, "{key}");
        }
        Ok(())
    }

    #[test]
    fn serving_cert_verifies_for_default_hosts() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &["0.0.0.0".to_string()])?;
        for host in [
            "127.0.0.1",
            "localhost",
            "::1",
            "kubernetes.default.svc.cluster.local",
        ] {
            verify_server(pki.ca_pem(), pki.serving_cert_pem(), host)?;
        }
        assert!(verify_server(pki.ca_pem(), pki.serving_cert_pem(), "example.com").is_err());
        Ok(())
    }

    #[test]
    fn a_new_host_reissues_the_serving_cert_with_the_same_ca() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = Pki::load_or_create(dir.path(), &["10.0.0.5".to_string()])?;
        let second = Pki::load_or_create(dir.path(), &["Node.Example".to_string()])?;
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_ne!(first.serving_cert_pem(), second.serving_cert_pem());
        assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
        for host in ["10.0.0.5", "node.example", "localhost"] {
            verify_server(second.ca_pem(), second.serving_cert_pem(), host)?;
        }
        Ok(())
    }

    #[test]
    fn issued_certs_carry_identity_and_hosts() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[])?;
        let (cert, key) = pki.issue_client("system:node:n1", &["system:nodes"], 30)?;
        KeyPair::from_pem(&key)?;
        let der = pem_der(&cert);
        let id = crate::tls::identity_from_cert(&der)?;
        assert_eq!(id.user, "system:node:n1");
        assert!(id.groups.contains(&"system:nodes".to_string()));

        let (cert, _) = pki.issue_serving(&["n1".to_string(), "192.168.1.7".to_string()])?;
        verify_server(pki.ca_pem(), &cert, "n1")?;
        verify_server(pki.ca_pem(), &cert, "192.168.1.7")?;
        assert!(verify_server(pki.ca_pem(), &cert, "n2").is_err());
        assert!(matches!(pki.issue_serving(&[]), Err(PkiError::NoHosts)));

        let node = pki.issue_node("n2", &["127.0.0.2".parse()?])?;
        let id = crate::tls::identity_from_cert(&pem_der(&node.client_cert_pem))?;
        assert_eq!(id.user, "system:node:n2");
        assert!(id.groups.contains(&NODES_GROUP.to_string()));
        verify_server(pki.ca_pem(), &node.serving_cert_pem, "127.0.0.2")?;
        verify_server(pki.ca_pem(), &node.serving_cert_pem, "n2")?;
        assert!(verify_server(pki.ca_pem(), &node.serving_cert_pem, "127.0.0.3").is_err());

        let id = crate::tls::identity_from_cert(&pem_der(&pki.kubelet_client.cert_pem))?;
        assert_eq!(id.user, KUBELET_CLIENT_USER);
        assert!(id.groups.contains(&ADMIN_GROUP.to_string()));
        pki.kubelet_client_config()?;
        Ok(())
    }

    #[test]
    fn corrupt_or_partial_ca_is_an_error_naming_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        Pki::load_or_create(dir.path(), &[])?;
        let ca_crt = dir.path().join("pki/ca.crt");
        let ca_key = dir.path().join("pki/ca.key");
        let key_before = fs::read(&ca_key)?;

        fs::write(&ca_crt, "not a certificate")?;
        let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::BadCert { .. }), "{err:?}");
        assert!(err.to_string().contains("ca.crt"), "{err}");

        fs::remove_file(&ca_crt)?;
        let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::PartialCa { .. }), "{err:?}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
        assert_eq!(fs::read(&ca_key)?, key_before);
        assert!(!ca_crt.exists());

        fs::write(&ca_key, "garbage")?;
        fs::write(&ca_crt, "garbage")?;
        let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
        Ok(())
    }

    #[test]
    fn a_leaf_from_another_ca_is_reissued() -> anyhow::Result<()> {
        let ours = tempfile::tempdir()?;
        let theirs = tempfile::tempdir()?;
        Pki::load_or_create(ours.path(), &[])?;
        Pki::load_or_create(theirs.path(), &[])?;
        for file in ["admin.crt", "admin.key"] {
            fs::copy(
                theirs.path().join("pki").join(file),
                ours.path().join("pki").join(file),
            )?;
        }
        let pki = Pki::load_or_create(ours.path(), &[])?;
        let id = crate::tls::identity_from_cert(&pem_der(pki.admin_cert_pem()))?;
        assert_eq!(id.user, ADMIN_USER);
        let theirs_admin = fs::read_to_string(theirs.path().join("pki/admin.crt"))?;
        assert_ne!(pki.admin_cert_pem(), theirs_admin);
        Ok(())
    }

    #[test]
    fn kubeconfig_round_trips() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(dir.path(), &[])?;
        let path = dir.path().join("admin.kubeconfig");
        write_kubeconfig(
            &path,
            "https://127.0.0.1:6443",
            pki.ca_pem(),
            pki.admin_cert_pem(),
            pki.admin_key_pem(),
        )?;
        assert_eq!(mode(&path), 0o600);
        let config: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
        let decode = |v: &serde_json::Value| -> anyhow::Result<String> {
            Ok(String::from_utf8(
                BASE64.decode(v.as_str().unwrap_or_default())?,
            )?)
        };
        assert_eq!(config["current-context"], "shoal");
        let cluster = &config["clusters"][0];
        assert_eq!(cluster["name"], "shoal");
        assert_eq!(cluster["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(
            decode(&cluster["cluster"]["certificate-authority-data"])?,
            pki.ca_pem()
        );
        let user = &config["users"][0];
        assert_eq!(user["name"], "shoal");
        assert_eq!(
            decode(&user["user"]["client-certificate-data"])?,
            pki.admin_cert_pem()
        );
        assert_eq!(
            decode(&user["user"]["client-key-data"])?,
            pki.admin_key_pem()
        );
        assert_eq!(config["contexts"][0]["context"]["user"], "shoal");
        assert_eq!(config["contexts"][0]["context"]["cluster"], "shoal");
        Ok(())
    }
}
