//! Pulls and pushes against a real registry (Debian's `docker-registry`,
//! distribution 2.8) started by `testbed`: both image layouts, digests
//! checked against tampered storage, htpasswd auth, and bad input.

use flate2::{Compression, write::GzEncoder};
use images::{Auth, Image, ImageError, ImageStore, RegistryConfig, TITLE_ANNOTATION};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use testbed::Registry;

const ANON: Auth = Auth::Anonymous;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn id_of(path: &str) -> String {
    sha256(&std::fs::read(path).unwrap())
}

fn fresh_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

fn nothing_stored(store: &ImageStore) {
    assert!(store.list().unwrap().is_empty());
    for sub in ["tmp", "blobs/sha256"] {
        let left: Vec<_> = std::fs::read_dir(store.dir().join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}

/// Pushes an image by hand (for layouts `images::push` does not write):
/// each blob, then the manifest; returns the manifest digest.
async fn push_raw(reference: &str, blobs: &[&[u8]], manifest: serde_json::Value) -> String {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference: Reference = reference.parse().unwrap();
    client
        .store_auth_if_needed(
            reference.resolve_registry(),
            &oci_client::secrets::RegistryAuth::Anonymous,
        )
        .await;
    for blob in blobs {
        client
            .push_blob(&reference, blob.to_vec(), &sha256(blob))
            .await
            .unwrap();
    }
    let media_type = manifest["mediaType"].as_str().unwrap().to_owned();
    let body = serde_json::to_vec(&manifest).unwrap();
    client
        .push_manifest_raw(&reference, body.clone(), media_type.parse().unwrap())
        .await
        .unwrap();
    sha256(&body)
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": sha256(bytes), "size": bytes.len() })
}

fn oci_manifest(config: serde_json::Value, layers: Vec<serde_json::Value>) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    })
}

/// A tar (gzipped if asked) holding `files` (path, bytes).
fn tar_layer(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// An OCI image config, with an Entrypoint if given.
fn image_config(entrypoint: Option<&str>) -> Vec<u8> {
    let mut config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": { "type": "layers", "diff_ids": [] },
        "config": {},
    });
    if let Some(e) = entrypoint {
        config["config"]["Entrypoint"] = json!([e]);
    }
    serde_json::to_vec(&config).unwrap()
}

/// Pushes a `FROM scratch` + `COPY` style image: one tar layer.
async fn push_tar_image(
    reference: &str,
    files: &[(&str, &[u8])],
    gzip: bool,
    entrypoint: Option<&str>,
) -> String {
    let layer = tar_layer(files, gzip);
    let config = image_config(entrypoint);
    let layer_type = if gzip {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    let manifest = oci_manifest(
        descriptor("application/vnd.oci.image.config.v1+json", &config),
        vec![descriptor(layer_type, &layer)],
    );
    push_raw(reference, &[&layer, &config], manifest).await
}

#[tokio::test]
async fn a_pushed_module_pulls_into_a_fresh_store() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let reference = format!("{}/shoal/hello:v1", registry.addr());
    let pushed = images::push(
        Path::new(artifacts::HELLO),
        &reference,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let repo = format!("{}/shoal/hello", registry.addr());
    assert!(pushed.starts_with(&format!("{repo}@sha256:")), "{pushed}");
    let again = images::push(
        Path::new(artifacts::HELLO),
        &reference,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    assert_eq!(again, pushed, "the same file pushes to the same digest");

    let (_dir, store) = fresh_store();
    let image = store.pull(&reference, &ANON).await?;
    assert_eq!(image.id, id_of(artifacts::HELLO));
    assert_eq!(image.repo_tags, std::slice::from_ref(&reference));
    assert_eq!(image.repo_digests, std::slice::from_ref(&pushed));
    assert_eq!(
        image.annotations.get(TITLE_ANNOTATION).map(String::as_str),
        Some("hello.wasm")
    );
    assert_eq!(
        std::fs::read(&image.path)?,
        std::fs::read(artifacts::HELLO)?
    );
    assert_eq!(store.status(&pushed)?.as_ref(), Some(&image));
    assert_eq!(store.status(&reference)?.as_ref(), Some(&image));

    // By digest, into another fresh store; `localhost` is the same loopback registry.
    let (_dir2, other) = fresh_store();
    let by_digest = other.pull(&pushed, &ANON).await?;
    assert_eq!(by_digest.id, image.id);
    assert!(by_digest.repo_tags.is_empty());
    let localhost = format!("localhost:{}/shoal/hello:v1", registry.port());
    let via_localhost = other.pull(&localhost, &ANON).await?;
    assert_eq!(via_localhost.id, image.id);
    assert!(via_localhost.repo_tags.contains(&localhost));

    // A component pushes as wasip2 and comes back whole.
    let component = format!("{}/shoal/connect-out:v1", registry.addr());
    images::push(
        Path::new(artifacts::CONNECT_OUT),
        &component,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let pulled = store.pull(&component, &ANON).await?;
    assert_eq!(pulled.id, id_of(artifacts::CONNECT_OUT));
    assert_eq!(store.list()?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_second_pull_is_served_from_the_store() -> anyhow::Result<()> {
    let mut registry = Registry::start().await?;
    let reference = format!("{}/shoal/cached:v1", registry.addr());
    let pushed = images::push(
        Path::new(artifacts::HELLO),
        &reference,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let blobs = "/v2/shoal/cached/blobs/";
    let manifests = "/v2/shoal/cached/manifests/";

    let (_dir, store) = fresh_store();
    let first = store.pull(&reference, &ANON).await?;
    let blob_gets = registry.requests("GET", blobs);
    assert!(blob_gets >= 1, "the first pull fetched the layer");
    let manifest_gets = registry.requests("GET", manifests);

    // By tag: the manifest is asked for again (tags move), no blob is.
    let second = store.pull(&reference, &ANON).await?;
    assert_eq!(second, first);
    assert_eq!(registry.requests("GET", blobs), blob_gets);
    assert_eq!(registry.requests("GET", manifests), manifest_gets + 1);

    // By digest: nothing is asked at all.
    let by_digest = store.pull(&pushed, &ANON).await?;
    assert_eq!(by_digest.id, first.id);
    assert_eq!(registry.requests("GET", manifests), manifest_gets + 1);

    // With the registry gone, a digest still resolves locally; a tag cannot.
    registry.kill();
    assert_eq!(store.pull(&pushed, &ANON).await?.id, first.id);
    let started = Instant::now();
    let err = store.pull(&reference, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains(&registry.addr()), "{err}");
    Ok(())
}

#[tokio::test]
async fn tar_layers_yield_their_wasm_file() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let hello = std::fs::read(artifacts::HELLO)?;
    let pi = std::fs::read(artifacts::BATCH_PI)?;
    let (_dir, store) = fresh_store();

    // Plain tar, one .wasm beside other files.
    let plain = format!("{}/tar/plain:v1", registry.addr());
    push_tar_image(
        &plain,
        &[("README", b"docs"), ("app.wasm", &hello)],
        false,
        None,
    )
    .await;
    assert_eq!(store.pull(&plain, &ANON).await?.id, sha256(&hello));

    // tar.gz with two modules: the Entrypoint picks one.
    let picked = format!("{}/tar/picked:v1", registry.addr());
    let digest = push_tar_image(
        &picked,
        &[("hello.wasm", &hello), ("bin/pi.wasm", &pi)],
        true,
        Some("/bin/pi.wasm"),
    )
    .await;
    let image = store.pull(&picked, &ANON).await?;
    assert_eq!(image.id, sha256(&pi));
    assert_eq!(
        image.repo_digests,
        [format!("{}/tar/picked@{digest}", registry.addr())]
    );

    // Two modules and no Entrypoint: which one is meant is not known.
    let unclear = format!("{}/tar/unclear:v1", registry.addr());
    push_tar_image(&unclear, &[("a.wasm", &hello), ("b.wasm", &pi)], true, None).await;
    let err = store.pull(&unclear, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    assert!(
        err.to_string().contains("/a.wasm") && err.to_string().contains("Entrypoint"),
        "{err}"
    );

    // An Entrypoint naming a file the layer does not hold.
    let wrong = format!("{}/tar/wrong:v1", registry.addr());
    push_tar_image(&wrong, &[("a.wasm", &hello)], false, Some("/missing.wasm")).await;
    let err = store.pull(&wrong, &ANON).await.unwrap_err();
    assert!(err.to_string().contains("/missing.wasm"), "{err}");

    // A tar whose only .wasm is not Wasm.
    let fake = format!("{}/tar/fake:v1", registry.addr());
    push_tar_image(&fake, &[("app.wasm", b"#!/bin/sh\necho hi\n")], false, None).await;
    let err = store.pull(&fake, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");

    assert_eq!(store.list()?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn other_layouts_are_refused_naming_their_media_types() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let (_dir, store) = fresh_store();
    let text = b"hello, not wasm".as_slice();
    let config = b"{}".as_slice();
    let reference = format!("{}/odd/text:v1", registry.addr());
    let manifest = oci_manifest(
        descriptor("application/vnd.oci.image.config.v1+json", config),
        vec![
            descriptor("text/plain", text),
            descriptor("text/plain", text),
        ],
    );
    push_raw(&reference, &[text, config], manifest).await;
    let err = store.pull(&reference, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("text/plain") && msg.contains("application/vnd.oci.image.config.v1+json"),
        "{msg}"
    );

    // An application/wasm layer that is not Wasm.
    let reference = format!("{}/odd/liar:v1", registry.addr());
    let manifest = oci_manifest(
        descriptor(images::WASM_CONFIG_MEDIA_TYPE, config),
        vec![descriptor("application/wasm", text)],
    );
    push_raw(&reference, &[text, config], manifest).await;
    let err = store.pull(&reference, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    nothing_stored(&store);
    Ok(())
}

#[tokio::test]
async fn an_image_index_yields_its_wasm_platform() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let repo = format!("{}/multi/app", registry.addr());
    let module = format!("{repo}:wasm");
    let pushed = images::push(
        Path::new(artifacts::HELLO),
        &module,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let wasm_digest = pushed.rsplit_once('@').unwrap().1.to_owned();
    let wasm_manifest_size = std::fs::metadata(registry.blob_data(&wasm_digest))?.len();
    let decoy = format!("{repo}:decoy");
    let decoy_digest = push_tar_image(
        &decoy,
        &[("x.wasm", &std::fs::read(artifacts::BATCH_PI)?)],
        false,
        None,
    )
    .await;
    let decoy_size = std::fs::metadata(registry.blob_data(&decoy_digest))?.len();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": decoy_digest, "size": decoy_size,
              "platform": { "architecture": "amd64", "os": "linux" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": wasm_digest, "size": wasm_manifest_size,
              "platform": { "architecture": "wasm", "os": "wasip1" } },
        ],
    });
    let tagged = format!("{repo}:multi");
    let index_digest = push_raw(&tagged, &[], index).await;
    let (_dir, store) = fresh_store();
    let image = store.pull(&tagged, &ANON).await?;
    assert_eq!(image.id, id_of(artifacts::HELLO));
    assert_eq!(image.repo_digests, [format!("{repo}@{index_digest}")]);
    Ok(())
}

#[tokio::test]
async fn a_tampered_layer_is_refused_and_nothing_is_stored() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let reference = format!("{}/shoal/tampered:v1", registry.addr());
    images::push(
        Path::new(artifacts::HELLO),
        &reference,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let layer = id_of(artifacts::HELLO);
    let data = registry.blob_data(&layer);
    let mut bytes = std::fs::read(&data)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // same length, other bytes
    std::fs::write(&data, &bytes)?;

    let (_dir, store) = fresh_store();
    let err = store.pull(&reference, &ANON).await.unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &layer);
            assert_eq!(actual, &sha256(&bytes));
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    nothing_stored(&store);
    Ok(())
}

#[tokio::test]
async fn a_tampered_manifest_is_refused() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let reference = format!("{}/shoal/manifest:v1", registry.addr());
    let pushed = images::push(
        Path::new(artifacts::HELLO),
        &reference,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let digest = pushed.rsplit_once('@').unwrap().1.to_owned();
    // Same JSON, other bytes: the registry still parses and serves it.
    let data = registry.blob_data(&digest);
    let mut bytes = std::fs::read(&data)?;
    bytes.extend_from_slice(b"\n ");
    std::fs::write(&data, &bytes)?;

    let (_dir, store) = fresh_store();
    for pull in [&pushed, &reference] {
        let err = store.pull(pull, &ANON).await.unwrap_err();
        match &err {
            ImageError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, &digest, "{pull}");
                assert_eq!(actual, &sha256(&bytes), "{pull}");
            }
            other => panic!("{pull}: expected a digest mismatch, got {other}"),
        }
    }
    // A digest the registry does not have.
    let unknown = format!(
        "{}/shoal/manifest@sha256:{}",
        registry.addr(),
        "0".repeat(64)
    );
    let err = store.pull(&unknown, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    nothing_stored(&store);
    Ok(())
}

#[tokio::test]
async fn htpasswd_registries_want_the_right_credentials() -> anyhow::Result<()> {
    let registry = Registry::start_with_htpasswd("alice", "s3cret").await?;
    let reference = format!("{}/private/hello:v1", registry.addr());
    let config = RegistryConfig::default();
    let alice = Auth::Basic {
        username: "alice".to_owned(),
        password: "s3cret".to_owned(),
    };
    let wrong = Auth::Basic {
        username: "alice".to_owned(),
        password: "guess".to_owned(),
    };
    let hello = Path::new(artifacts::HELLO);

    let err = images::push(hello, &reference, &ANON, &config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Unauthorized {
                anonymous: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("requires credentials"), "{err}");
    let err = images::push(hello, &reference, &wrong, &config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Unauthorized {
                anonymous: false,
                ..
            }
        ),
        "{err}"
    );
    let pushed = images::push(hello, &reference, &alice, &config).await?;

    let (_dir, store) = fresh_store();
    for auth in [&ANON, &wrong] {
        let err = store.pull(&reference, auth).await.unwrap_err();
        assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
        let err = store.pull(&pushed, auth).await.unwrap_err();
        assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    }
    nothing_stored(&store);
    let image = store.pull(&reference, &alice).await?;
    assert_eq!(image.id, id_of(artifacts::HELLO));
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let dir = tempfile::tempdir()?;
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "plain text, not a module")?;
    let config = RegistryConfig::default();
    let good = format!("{}/shoal/bad:v1", registry.addr());

    let err = images::push(&text, &good, &ANON, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    assert!(err.to_string().contains("notes.wasm"), "{err}");
    let err = images::push(&dir.path().join("absent.wasm"), &good, &ANON, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err}");
    for bad in [
        "Shoal/Hello:v1",
        "reg:5000/x:bad tag",
        "http://127.0.0.1/x:v1",
        "file:///x.wasm",
    ] {
        let err = images::push(Path::new(artifacts::HELLO), bad, &ANON, &config)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageError::InvalidReference { .. }),
            "{bad}: {err}"
        );
    }
    let by_digest = format!("{}/shoal/bad@sha256:{}", registry.addr(), "a".repeat(64));
    let err = images::push(Path::new(artifacts::HELLO), &by_digest, &ANON, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");

    let small = RegistryConfig {
        max_module_bytes: 1000,
        ..RegistryConfig::default()
    };
    let err = images::push(Path::new(artifacts::HELLO), &good, &ANON, &small)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { limit: 1000, .. }),
        "{err}"
    );

    // Over the limit on pull, as the manifest declares it.
    images::push(Path::new(artifacts::HELLO), &good, &ANON, &config).await?;
    let (_dir, store) = fresh_store();
    let small_store = store.clone().with_config(small);
    let err = small_store.pull(&good, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");

    // No such tag, no such repository.
    for missing in ["shoal/bad:v2", "nobody/here:v1"] {
        let err = store
            .pull(&format!("{}/{missing}", registry.addr()), &ANON)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageError::NotFound { .. }),
            "{missing}: {err}"
        );
    }

    // Nothing listening.
    let closed = format!("127.0.0.1:{}/x/y:v1", testbed::free_port());
    let started = Instant::now();
    let err = store.pull(&closed, &ANON).await.unwrap_err();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = images::push(Path::new(artifacts::HELLO), &closed, &ANON, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    nothing_stored(&store);
    Ok(())
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_agree() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let reference = format!("{}/shoal/busy:v1", registry.addr());
    images::push(
        Path::new(artifacts::BATCH_PI),
        &reference,
        &ANON,
        &RegistryConfig::default(),
    )
    .await?;
    let (_dir, store) = fresh_store();
    let pulls: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let reference = reference.clone();
            tokio::spawn(async move { store.pull(&reference, &Auth::Anonymous).await })
        })
        .collect();
    let mut images: Vec<Image> = Vec::new();
    for pull in pulls {
        images.push(pull.await??);
    }
    assert!(images.iter().all(|i| i.id == id_of(artifacts::BATCH_PI)));
    assert_eq!(store.list()?.len(), 1);
    assert_eq!(std::fs::read_dir(store.dir().join("tmp"))?.count(), 0);
    Ok(())
}
