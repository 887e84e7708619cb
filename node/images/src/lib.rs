//! `images`: a node's image store (placeholder while it is being written).
