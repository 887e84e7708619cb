//! The image store on its own (no registry): imports, `file://` pulls,
//! lookups, removal, limits, several stores on one directory, and what a
//! killed process leaves behind.

use images::{Auth, ImageError, ImageStore, RegistryConfig};
use sha2::{Digest as _, Sha256};
use std::path::Path;

fn id_of(path: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("sha256:{:x}", Sha256::digest(&bytes))
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    (dir, store)
}

/// Files under `dir/tmp`: in-progress writes; none once every call returned.
fn temp_files(store: &ImageStore) -> usize {
    std::fs::read_dir(store.dir().join("tmp")).unwrap().count()
}

#[test]
fn an_import_is_found_by_tag_id_and_prefix_then_removed() {
    let (_dir, store) = store();
    let image = store
        .import(Path::new(artifacts::HELLO), "hello:v1")
        .unwrap();
    let id = id_of(artifacts::HELLO);
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, ["docker.io/library/hello:v1"]);
    assert!(image.repo_digests.is_empty());
    assert_eq!(
        image.size,
        std::fs::metadata(artifacts::HELLO).unwrap().len()
    );
    assert_eq!(
        std::fs::read(&image.path).unwrap(),
        std::fs::read(artifacts::HELLO).unwrap()
    );
    assert!(
        std::fs::metadata(&image.path)
            .unwrap()
            .permissions()
            .readonly()
    );

    for key in [
        "hello:v1",
        "docker.io/library/hello:v1",
        "library/hello:v1",
        &id,
        &id[7..19],
        &id[..19],
    ] {
        assert_eq!(store.status(key).unwrap().as_ref(), Some(&image), "{key}");
    }
    assert_eq!(
        store.status("hello").unwrap(),
        None,
        "hello:latest was never imported"
    );
    assert_eq!(store.status("other:v1").unwrap(), None);
    assert_eq!(store.list().unwrap(), std::slice::from_ref(&image));

    store.remove("hello:v1").unwrap();
    assert_eq!(store.status(&id).unwrap(), None);
    assert!(!image.path.exists());
    assert!(store.list().unwrap().is_empty());
    store.remove("hello:v1").unwrap();
    store.remove(&id).unwrap();
    assert_eq!(temp_files(&store), 0);
}

#[test]
fn removing_by_id_drops_every_tag() {
    let (_dir, store) = store();
    store.import(Path::new(artifacts::HELLO), "a:1").unwrap();
    let image = store.import(Path::new(artifacts::HELLO), "b:2").unwrap();
    assert_eq!(
        image.repo_tags,
        ["docker.io/library/a:1", "docker.io/library/b:2"]
    );
    store.remove(&image.id).unwrap();
    assert_eq!(store.status("a:1").unwrap(), None);
    assert_eq!(store.status("b:2").unwrap(), None);
}

#[test]
fn a_tag_moves_to_the_module_imported_last() {
    let (_dir, store) = store();
    let first = store.import(Path::new(artifacts::HELLO), "app:v1").unwrap();
    let second = store
        .import(Path::new(artifacts::BATCH_PI), "app:v1")
        .unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(store.status("app:v1").unwrap().unwrap().id, second.id);
    let old = store
        .status(&first.id)
        .unwrap()
        .expect("the old module stays, untagged");
    assert!(old.repo_tags.is_empty());
    assert_eq!(store.list().unwrap().len(), 2);
    // A prefix shared by both ids is ambiguous; "sha256:" alone is every id.
    assert!(matches!(
        store.status("sha256:"),
        Err(ImageError::InvalidReference { .. } | ImageError::Ambiguous { .. })
    ));
}

#[test]
fn bad_imports_are_refused_and_store_nothing() {
    let (dir, store) = store();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text, long enough").unwrap();
    let err = store.import(&text, "x:v1").unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");

    let err = store
        .import(&dir.path().join("missing.wasm"), "x:v1")
        .unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.wasm"), "{err}");

    for name in [
        "Bad Name",
        "UPPER:v1",
        &format!("x@sha256:{}", "a".repeat(64)),
    ] {
        let err = store.import(Path::new(artifacts::HELLO), name).unwrap_err();
        assert!(
            matches!(err, ImageError::InvalidReference { .. }),
            "{name}: {err}"
        );
    }

    let small = store.clone().with_config(RegistryConfig {
        max_module_bytes: 100,
        ..RegistryConfig::default()
    });
    let err = small
        .import(Path::new(artifacts::HELLO), "x:v1")
        .unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { limit: 100, .. }),
        "{err}"
    );

    assert!(store.list().unwrap().is_empty());
    assert_eq!(temp_files(&store), 0);
    let blobs = std::fs::read_dir(store.dir().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
}

#[tokio::test]
async fn file_urls_are_pulled_and_named_by_their_url() {
    let (dir, store) = store();
    let url = format!("file://{}", artifacts::CONNECT_OUT);
    let image = store.pull(&url, &Auth::Anonymous).await.unwrap();
    assert_eq!(image.id, id_of(artifacts::CONNECT_OUT));
    assert_eq!(image.repo_tags, std::slice::from_ref(&url));
    assert_eq!(store.status(&url).unwrap(), Some(image.clone()));

    // The file changed: a pull reads it again and the URL follows.
    let module = dir.path().join("module.wasm");
    std::fs::copy(artifacts::HELLO, &module).unwrap();
    let url = format!("file://{}", module.display());
    let first = store.pull(&url, &Auth::Anonymous).await.unwrap();
    std::fs::copy(artifacts::BATCH_PI, &module).unwrap();
    let second = store.pull(&url, &Auth::Anonymous).await.unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(store.status(&url).unwrap().unwrap().id, second.id);

    let missing = format!("file://{}", dir.path().join("gone.wasm").display());
    let err = store.pull(&missing, &Auth::Anonymous).await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    let err = store
        .pull("file://relative.wasm", &Auth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
    let err = store
        .pull(
            &format!("file://{}", artifacts::MALFORMED),
            &Auth::Anonymous,
        )
        .await;
    // MALFORMED has a valid header (its body is garbage): the store checks
    // the header only; compiling is the runtime's job.
    assert!(err.is_ok(), "{err:?}");
}

#[test]
fn stores_on_one_directory_see_each_others_changes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = ImageStore::open(dir.path()).unwrap();
    let b = ImageStore::open(dir.path()).unwrap();
    let image = a.import(Path::new(artifacts::HELLO), "shared:v1").unwrap();
    assert_eq!(b.status("shared:v1").unwrap(), Some(image.clone()));
    b.remove("shared:v1").unwrap();
    assert_eq!(a.status(&image.id).unwrap(), None);
}

#[test]
fn concurrent_imports_of_one_module_make_one_image() {
    let (_dir, store) = store();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || store.import(Path::new(artifacts::HELLO), &format!("t:{i}")))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].repo_tags.len(), 8);
    assert_eq!(temp_files(&store), 0);
}

#[test]
fn leftovers_of_a_killed_process_are_cleared_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let kept = store
        .import(Path::new(artifacts::HELLO), "kept:v1")
        .unwrap();
    drop(store);

    // A half-written download, an hour old, that no process holds.
    let part = dir.path().join("tmp/999-0-0.part");
    std::fs::write(&part, b"\0asm\x01\0\0\0half").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&part)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    // A blob placed by a process killed before it wrote the index.
    let orphan = dir.path().join(format!("blobs/sha256/{}", "e".repeat(64)));
    std::fs::write(&orphan, b"\0asm\x01\0\0\0").unwrap();

    let store = ImageStore::open(dir.path()).unwrap();
    assert!(!part.exists());
    assert!(!orphan.exists());
    assert_eq!(store.list().unwrap(), [kept]);
}

#[test]
fn a_damaged_index_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.json"), b"{ not json").unwrap();
    let err = ImageStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("index.json"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("index.json")).unwrap(),
        b"{ not json",
        "a damaged index is left for inspection"
    );
}

#[test]
fn usage_counts_the_store_files() {
    let (_dir, store) = store();
    let empty = store.usage().unwrap();
    let image = store.import(Path::new(artifacts::HELLO), "u:v1").unwrap();
    let used = store.usage().unwrap();
    assert_eq!(used.mountpoint, store.dir());
    assert!(used.bytes >= empty.bytes + image.size, "{used:?} {empty:?}");
    assert!(used.inodes > empty.inodes);
}

#[test]
fn a_store_sees_at_once_what_another_store_on_its_directory_wrote() {
    // Two stores on one directory, as `shoal cri` and `shoal image import`
    // in two processes: each keeps its own parsed index.
    let (_dir, cri) = store();
    let import = ImageStore::open(cri.dir()).unwrap();
    assert!(cri.status("app:v1").unwrap().is_none());

    let first = import
        .import(Path::new(artifacts::HELLO), "app:v1")
        .unwrap();
    assert_eq!(cri.status("app:v1").unwrap().unwrap().id, first.id);
    // Parsed once, then served from memory while the file stays the same.
    assert_eq!(cri.status("app:v1").unwrap().unwrap().id, first.id);

    // The tag moves; then the moved-to image is removed: each rewrite of
    // the index is seen by the next lookup.
    let second = import
        .import(Path::new(artifacts::BATCH_PI), "app:v1")
        .unwrap();
    assert_eq!(cri.status("app:v1").unwrap().unwrap().id, second.id);
    assert_eq!(cri.list().unwrap().len(), 2);
    import.remove(&second.id).unwrap();
    assert!(cri.status("app:v1").unwrap().is_none());
    assert_eq!(cri.list().unwrap().len(), 1);

    // And the other way round: this store's own writes are seen by both.
    cri.import(Path::new(artifacts::HELLO), "app:v2").unwrap();
    assert_eq!(import.status("app:v2").unwrap().unwrap().id, first.id);
    assert_eq!(cri.status("app:v2").unwrap().unwrap().id, first.id);
}
