//! `cri`: the CRI v1 runtime and image services (placeholder while it is being written).
