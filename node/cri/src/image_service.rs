//! The ImageService over the node's [`images::ImageStore`]: PullImage (with
//! the registry credentials of the request's AuthConfig), ImageStatus,
//! ListImages, RemoveImage and ImageFsInfo. An image's id is the `sha256`
//! of its module, and PullImage answers with it: the kubelet then creates
//! containers from that id.

use base64::Engine as _;
use images::{Auth, Image};
use k8s_cri::v1 as cri;

use crate::error::CriError;
use crate::runtime::{Runtime, now_ns};

impl Runtime {
    pub async fn pull_image(&self, req: cri::PullImageRequest) -> Result<String, CriError> {
        let reference = image_name(req.image.as_ref())?;
        let auth = auth(req.auth.as_ref())?;
        let image = self.images.pull(&reference, &auth).await?;
        tracing::info!(image = %reference, id = %image.id, size = image.size, "image pulled");
        Ok(image.id)
    }

    pub fn image_status(
        &self,
        req: cri::ImageStatusRequest,
    ) -> Result<Option<cri::Image>, CriError> {
        let reference = image_name(req.image.as_ref())?;
        Ok(self.images.status(&reference)?.map(to_cri))
    }

    pub fn list_images(
        &self,
        filter: Option<cri::ImageFilter>,
    ) -> Result<Vec<cri::Image>, CriError> {
        let wanted = filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        match wanted {
            Some(reference) => Ok(self
                .images
                .status(&reference)?
                .map(to_cri)
                .into_iter()
                .collect()),
            None => Ok(self.images.list()?.into_iter().map(to_cri).collect()),
        }
    }

    pub fn remove_image(&self, req: cri::RemoveImageRequest) -> Result<(), CriError> {
        let reference = image_name(req.image.as_ref())?;
        self.images.remove(&reference)?;
        tracing::info!(image = %reference, "image removed");
        Ok(())
    }

    pub fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse, CriError> {
        let usage = self.images.usage()?;
        Ok(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp: now_ns(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: usage.mountpoint.display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value { value: usage.bytes }),
                inodes_used: Some(cri::UInt64Value {
                    value: usage.inodes,
                }),
            }],
            container_filesystems: Vec::new(),
        })
    }
}

fn image_name(spec: Option<&cri::ImageSpec>) -> Result<String, CriError> {
    spec.map(|s| s.image.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            CriError::InvalidArgument("the request names no image (image.image is empty)".into())
        })
}

/// Registry credentials from an AuthConfig: username and password, or
/// `auth` (base64 of `username:password`, as in a Docker config), or an
/// identity or registry token.
fn auth(config: Option<&cri::AuthConfig>) -> Result<Auth, CriError> {
    let Some(c) = config else {
        return Ok(Auth::Anonymous);
    };
    if !c.username.is_empty() || !c.password.is_empty() {
        return Ok(Auth::Basic {
            username: c.username.clone(),
            password: c.password.clone(),
        });
    }
    if !c.auth.is_empty() {
        let bad = || {
            CriError::InvalidArgument(
                "AuthConfig.auth must be base64 of \"username:password\"".into(),
            )
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(c.auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Auth::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    for token in [&c.registry_token, &c.identity_token] {
        if !token.is_empty() {
            return Ok(Auth::Bearer {
                token: token.clone(),
            });
        }
    }
    Ok(Auth::Anonymous)
}

fn to_cri(image: Image) -> cri::Image {
    cri::Image {
        spec: Some(cri::ImageSpec {
            image: image.id.clone(),
            annotations: image.annotations.into_iter().collect(),
            ..Default::default()
        }),
        id: image.id,
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        uid: None,
        username: String::new(),
        pinned: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        assert_eq!(auth(None).unwrap(), Auth::Anonymous);
        let c = cri::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert_eq!(
            auth(Some(&c)).unwrap(),
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let c = cri::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"),
            ..Default::default()
        };
        assert_eq!(
            auth(Some(&c)).unwrap(),
            Auth::Basic {
                username: "alice".into(),
                password: "s3:cret".into()
            }
        );
        let c = cri::AuthConfig {
            auth: "not base64!".into(),
            ..Default::default()
        };
        assert!(matches!(auth(Some(&c)), Err(CriError::InvalidArgument(_))));
        let c = cri::AuthConfig {
            identity_token: "tok".into(),
            ..Default::default()
        };
        assert_eq!(
            auth(Some(&c)).unwrap(),
            Auth::Bearer {
                token: "tok".into()
            }
        );
    }
}
