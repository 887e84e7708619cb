//! `shoal push FILE REF` (a module to a registry, as a Wasm OCI artifact) and
//! `shoal image import FILE NAME:TAG` (a module into a node's image store,
//! `DATA_DIR/images`, with no registry). Progress and results go to stderr.

use crate::cli::{DataDir, PushArgs};
use anyhow::{Context as _, bail};
use images::{Auth, ImageStore, RegistryConfig};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The registry password, when not given on stdin.
const PASSWORD_ENV: &str = "SHOAL_REGISTRY_PASSWORD";

/// Where a node keeps its images under its data directory (the CRI
/// runtime's store, shared with `shoal image import`).
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let auth = credentials(&args)?;
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    let mut config = RegistryConfig::default();
    if args.insecure {
        let registry = args.reference.split('/').next().unwrap_or_default();
        config.insecure.push(registry.to_owned());
    }
    eprintln!(
        "pushing {} ({size} bytes) to {}{}",
        args.file.display(),
        args.reference,
        match &auth {
            Auth::Basic { username, .. } => format!(" as {username}"),
            _ => String::new(),
        }
    );
    let pushed = images::push(&args.file, &args.reference, &auth, &config).await?;
    eprintln!("pushed {pushed}");
    Ok(())
}

/// Credentials from `--username` (or `$SHOAL_REGISTRY_USERNAME`) and the
/// password from stdin (`--password-stdin`) or `$SHOAL_REGISTRY_PASSWORD`.
fn credentials(args: &PushArgs) -> anyhow::Result<Auth> {
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!(
                "--password-stdin read an empty password: pipe the password in, e.g. `echo \"$PASS\" | shoal push ... --password-stdin`"
            );
        }
        Some(password)
    } else {
        std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
    };
    match (&args.username, password) {
        (Some(username), Some(password)) => Ok(Auth::Basic {
            username: username.clone(),
            password,
        }),
        (None, None) => Ok(Auth::Anonymous),
        (Some(_), None) => {
            bail!("--username needs a password: pipe it to --password-stdin or set {PASSWORD_ENV}")
        }
        (None, Some(_)) => bail!(
            "a password was given without a user: add --username (or set SHOAL_REGISTRY_USERNAME)"
        ),
    }
}

pub fn import(file: &Path, name: &str, data_dir: &DataDir) -> anyhow::Result<()> {
    let dir = store_dir(&data_dir.resolve());
    let store = ImageStore::open(&dir)?;
    eprintln!(
        "importing {} as {name} into {}",
        file.display(),
        dir.display()
    );
    let image = store.import(file, name)?;
    eprintln!(
        "imported {} ({}, {} bytes)",
        image.repo_tags.join(", "),
        image.id,
        image.size
    );
    Ok(())
}
