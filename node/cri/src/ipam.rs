//! Pod IPs: one IPv4 address per pod sandbox from the node's pod CIDR. The
//! default CIDR, 127.42.0.0/16, sits inside 127.0.0.0/8, so every address is
//! real and local on Linux with no configuration: a guest served on its pod
//! IP is reachable there from the host.
//!
//! Addresses are handed out in turn (not lowest-free), so an IP just released
//! is not reused at once; the network and broadcast addresses and the first
//! host (a gateway, by convention) are never handed out.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::error::CriError;

/// The default pod CIDR.
pub const DEFAULT_POD_CIDR: &str = "127.42.0.0/16";

/// An IPv4 network, `base/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`. A comma-separated list (dual stack, as the
    /// kubelet sends it) gives its first IPv4 network.
    pub fn parse(s: &str) -> Result<Self, CriError> {
        let bad = |why: &str| {
            CriError::InvalidArgument(format!(
                "invalid pod CIDR {s:?}: {why}; give an IPv4 network such as {DEFAULT_POD_CIDR}"
            ))
        };
        let v4 = s
            .split(',')
            .map(str::trim)
            .find(|c| !c.contains(':'))
            .ok_or_else(|| bad("only IPv4 pod networks are served"))?;
        let (ip, prefix) = v4.split_once('/').ok_or_else(|| bad("no /prefix"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| bad("the prefix must be 0..=32"))?;
        let mask = mask(prefix);
        Ok(Cidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    /// Whether `ip` is inside.
    #[cfg(test)]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    /// The addresses that may be handed out, as a range of u32.
    fn hosts(&self) -> (u32, u32) {
        let size = 1u64 << (32 - u32::from(self.prefix));
        let last = (u64::from(self.base) + size - 1) as u32;
        if self.prefix >= 31 {
            (self.base, last)
        } else {
            // Skip the network address, the gateway and the broadcast.
            (self.base + 2, last - 1)
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The allocator.
#[derive(Debug)]
pub struct Ipam {
    cidr: Cidr,
    next: u32,
    used: HashSet<Ipv4Addr>,
}

impl Ipam {
    /// An allocator over `cidr` with nothing handed out.
    pub fn new(cidr: Cidr) -> Self {
        Self {
            next: cidr.hosts().0,
            cidr,
            used: HashSet::new(),
        }
    }

    /// The network addresses come from.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// Changes the network for the pods to come; pods keep their addresses.
    pub fn set_cidr(&mut self, cidr: Cidr) {
        if cidr != self.cidr {
            self.cidr = cidr;
            self.next = cidr.hosts().0;
        }
    }

    /// Hands out a free address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, CriError> {
        let (first, last) = self.cidr.hosts();
        let count = u64::from(last) - u64::from(first) + 1;
        let mut candidate = self.next.clamp(first, last);
        for _ in 0..count {
            let ip = Ipv4Addr::from(candidate);
            candidate = if candidate == last {
                first
            } else {
                candidate + 1
            };
            if self.used.insert(ip) {
                self.next = candidate;
                return Ok(ip);
            }
        }
        Err(CriError::ResourceExhausted(format!(
            "every pod IP of {} is in use: remove stopped pod sandboxes, or give a larger pod CIDR",
            self.cidr
        )))
    }

    /// Marks `ip` as in use (a pod recorded before a restart).
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(ip);
    }

    /// Returns `ip` to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let c = Cidr::parse("10.244.1.7/24").unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert!(c.contains("10.244.1.200".parse().unwrap()));
        assert!(!c.contains("10.244.2.1".parse().unwrap()));
        assert_eq!(
            Cidr::parse("fd00::/64, 10.1.0.0/16").unwrap().to_string(),
            "10.1.0.0/16"
        );
        for bad in ["", "10.0.0.0", "10.0.0.0/33", "fd00::/64", "x/8"] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(matches!(e, CriError::InvalidArgument(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn hands_out_in_turn_and_runs_out() {
        let mut ipam = Ipam::new(Cidr::parse("127.42.0.0/29").unwrap());
        let got: Vec<String> = (0..5)
            .map(|_| ipam.allocate().unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "127.42.0.2",
                "127.42.0.3",
                "127.42.0.4",
                "127.42.0.5",
                "127.42.0.6"
            ]
        );
        let e = ipam.allocate().unwrap_err();
        assert!(matches!(e, CriError::ResourceExhausted(_)), "{e}");
        ipam.release("127.42.0.3".parse().unwrap());
        assert_eq!(ipam.allocate().unwrap().to_string(), "127.42.0.3");
    }

    #[test]
    fn a_released_ip_is_not_reused_at_once() {
        let mut ipam = Ipam::new(Cidr::parse(DEFAULT_POD_CIDR).unwrap());
        let a = ipam.allocate().unwrap();
        ipam.release(a);
        let b = ipam.allocate().unwrap();
        assert_ne!(a, b);
        ipam.reserve("127.42.0.4".parse().unwrap());
        assert_eq!(ipam.allocate().unwrap().to_string(), "127.42.0.5");
    }
}
