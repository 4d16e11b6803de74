//! Outbound address policy: which IP addresses webhook deliveries may connect to.
//!
//! Webhook URLs are supplied by users, so without a policy the daemon is an
//! SSRF proxy into whatever network it runs in (cloud metadata endpoints,
//! admin ports on localhost, internal services). The policy is applied to the
//! *resolved* address at connect time (see `crate::outbound`), so DNS names that
//! point at internal addresses, and DNS rebinding, are covered too.
//!
//! Everything in a special-purpose range is blocked unless an explicit allow
//! CIDR (`delivery.allow_networks`) covers it. IPv6 forms that embed an IPv4
//! address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the
//! embedded IPv4 address, because that is where the packets end up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 network, e.g. `10.0.0.0/8` or `::1/128`.
///
/// Host bits below the prefix are cleared on construction, so `10.1.2.3/8`
/// is stored (and displayed) as `10.0.0.0/8`: the intent of such a config
/// entry is unambiguous and rejecting it would only make reloads fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string could not be parsed as a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {text:?}: {reason} (expected e.g. \"10.0.0.0/8\", \"::1/128\" or a bare IP address)")]
pub struct CidrError {
    text: String,
    reason: String,
}

impl CidrError {
    fn new(text: &str, reason: impl Into<String>) -> Self {
        CidrError {
            text: text.to_owned(),
            reason: reason.into(),
        }
    }

    /// The text that failed to parse, exactly as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Cidr {
    /// Builds a network from an address and prefix length, clearing host bits.
    ///
    /// Fails if the prefix is longer than the address family allows.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::new(
                &format!("{addr}/{prefix}"),
                format!(
                    "prefix length {prefix} is larger than {max} for {}",
                    family(addr)
                ),
            ));
        }
        Ok(Cidr::new_unchecked(addr, prefix))
    }

    fn new_unchecked(addr: IpAddr, prefix: u8) -> Cidr {
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask_v6(prefix))),
        };
        Cidr { addr, prefix }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies inside this network.
    ///
    /// Families never match each other: `127.0.0.0/8` does not contain
    /// `::ffff:127.0.0.1`. Embedded IPv4 forms are handled by
    /// [`AddressPolicy`], which knows which encodings are meaningful.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask_v4(self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask_v6(self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

const fn mask_v4(prefix: u8) -> u32 {
    // Shifting a u32 by 32 overflows, so /0 needs its own arm.
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

const fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix as u32)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(CidrError::new(s, "empty"));
        }
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            CidrError::new(s, format!("{addr_text:?} is not an IPv4 or IPv6 address"))
        })?;
        let max = max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                // u8::from_str accepts a leading '+', which nobody means in a CIDR.
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::new(
                        s,
                        format!("prefix length {p:?} is not a number"),
                    ));
                }
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => {
                        return Err(CidrError::new(
                            s,
                            format!(
                                "prefix length {p} is larger than {max} for {}",
                                family(addr)
                            ),
                        ))
                    }
                }
            }
        };
        Ok(Cidr::new_unchecked(addr, prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(s: String) -> Result<Cidr, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

/// A delivery target address refused by [`AddressPolicy::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Blocked {
    /// The address as it was resolved or written.
    pub ip: IpAddr,
    /// Name of the special-purpose range that matched, e.g. `"loopback"`.
    pub range: &'static str,
    /// For IPv6 forms that carry an IPv4 address: the encoding and the
    /// embedded address that was judged. Shown so that an operator seeing
    /// `2002:7f00:1::1` blocked as loopback understands why.
    pub embedded: Option<(&'static str, Ipv4Addr)>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ip)?;
        if let Some((encoding, v4)) = self.embedded {
            write!(f, " ({encoding} {v4})")?;
        }
        write!(
            f,
            " is in {} {} range; add it to delivery.allow_networks to allow it",
            article(self.range),
            self.range
        )
    }
}

fn article(noun: &str) -> &'static str {
    // "a unique-local" but "an unspecified"/"an IETF": good enough for our fixed names.
    let lower = noun.to_ascii_lowercase();
    if lower.starts_with("uni") {
        "a"
    } else if lower.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Decides whether an outbound connection to an IP address is permitted.
///
/// Cheap to share behind an `Arc`; `crate::outbound` swaps whole policies on
/// config reload rather than mutating one in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// A policy that blocks all special-purpose ranges except those covered by `allow`.
    pub fn new(allow: Vec<Cidr>) -> AddressPolicy {
        AddressPolicy { allow }
    }

    /// The explicit exemptions this policy was built with.
    pub fn allow(&self) -> &[Cidr] {
        &self.allow
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    /// Returns `Ok` if a connection to `ip` may be made.
    ///
    /// An allow entry matching the address as written wins first; for IPv6
    /// forms embedding an IPv4 address an allow entry matching the embedded
    /// address also wins, so that allowing `127.0.0.0/8` also covers
    /// `::ffff:127.0.0.1` (which the kernel routes to the same place).
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allowed(ip) {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => match special_v4(v4) {
                Some(range) => Err(Blocked {
                    ip,
                    range,
                    embedded: None,
                }),
                None => Ok(()),
            },
            IpAddr::V6(v6) => {
                if let Some(range) = special_v6(v6) {
                    return Err(Blocked {
                        ip,
                        range,
                        embedded: None,
                    });
                }
                if let Some((encoding, v4)) = embedded_v4(v6) {
                    if self.allowed(IpAddr::V4(v4)) {
                        return Ok(());
                    }
                    return match special_v4(v4) {
                        Some(range) => Err(Blocked {
                            ip,
                            range,
                            embedded: Some((encoding, v4)),
                        }),
                        None => Ok(()),
                    };
                }
                match reserved_v6(v6) {
                    Some(range) => Err(Blocked {
                        ip,
                        range,
                        embedded: None,
                    }),
                    None => Ok(()),
                }
            }
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    Ipv4Addr::new(a, b, c, d).to_bits()
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> u128 {
    Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits()
}

/// IANA IPv4 special-purpose ranges that a webhook has no business reaching.
/// Order matters only for naming: 255.255.255.255 must precede 240.0.0.0/4.
const SPECIAL_V4: &[(u32, u8, &str)] = &[
    (v4(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    (v4(10, 0, 0, 0), 8, "private (RFC 1918)"),
    (v4(100, 64, 0, 0), 10, "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0), 8, "loopback"),
    (v4(169, 254, 0, 0), 16, "link-local (cloud metadata)"),
    (v4(172, 16, 0, 0), 12, "private (RFC 1918)"),
    (v4(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (v4(192, 0, 2, 0), 24, "documentation (TEST-NET-1)"),
    (v4(192, 88, 99, 0), 24, "6to4 relay anycast"),
    (v4(192, 168, 0, 0), 16, "private (RFC 1918)"),
    (v4(198, 18, 0, 0), 15, "benchmarking"),
    (v4(198, 51, 100, 0), 24, "documentation (TEST-NET-2)"),
    (v4(203, 0, 113, 0), 24, "documentation (TEST-NET-3)"),
    (v4(224, 0, 0, 0), 4, "multicast"),
    (v4(255, 255, 255, 255), 32, "broadcast"),
    (v4(240, 0, 0, 0), 4, "reserved (240.0.0.0/4)"),
];

/// IPv6 special-purpose ranges that are blocked outright. The embedding
/// ranges (::ffff:0:0/96, ::/96, 64:ff9b::/96, 2002::/16) are not here: those
/// are judged by their IPv4 payload in [`embedded_v4`].
const SPECIAL_V6: &[(u128, u8, &str)] = &[
    (v6(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (v6(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "local-use NAT64"),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only"),
    // Covers Teredo (2001::/32): its payload is an obfuscated IPv4 address of
    // a NAT we know nothing about, so it is simplest to refuse.
    (
        v6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments",
    ),
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation"),
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique-local (ULA)"),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (
        v6(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local (deprecated)",
    ),
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    SPECIAL_V4
        .iter()
        .find(|(net, prefix, _)| bits & mask_v4(*prefix) == *net)
        .map(|(_, _, name)| *name)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    SPECIAL_V6
        .iter()
        .find(|(net, prefix, _)| bits & mask_v6(*prefix) == *net)
        .map(|(_, _, name)| *name)
}

/// Anything outside 2000::/3 (global unicast) that is not named above and
/// carries no IPv4 payload is unallocated IETF-reserved space; nothing
/// legitimate lives there, and refusing it closes encodings we did not think of
/// (e.g. the SIIT form ::ffff:0:a.b.c.d).
fn reserved_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let global_unicast = v6(0x2000, 0, 0, 0, 0, 0, 0, 0);
    if ip.to_bits() & mask_v6(3) == global_unicast {
        None
    } else {
        Some("reserved (outside 2000::/3)")
    }
}

/// The IPv4 address carried by an IPv6 encoding whose traffic ends up at that
/// IPv4 address, with the encoding's name.
fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    if bits & mask_v6(96) == v6(0, 0, 0, 0, 0, 0xffff, 0, 0) {
        return Some(("IPv4-mapped", low32));
    }
    if bits & mask_v6(96) == 0 {
        // ::/128 and ::1/128 are caught by SPECIAL_V6 before we get here.
        return Some(("IPv4-compatible", low32));
    }
    if bits & mask_v6(96) == v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0) {
        return Some(("NAT64", low32));
    }
    if bits & mask_v6(16) == v6(0x2002, 0, 0, 0, 0, 0, 0, 0) {
        // 6to4: 2002:AABB:CCDD::/48 routes via the relay at AA.BB.CC.DD.
        return Some(("6to4", Ipv4Addr::from_bits((bits >> 80) as u32)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn blocked_as(policy: &AddressPolicy, addr: &str) -> &'static str {
        match policy.check(ip(addr)) {
            Err(b) => b.range,
            Ok(()) => panic!("{addr} should be blocked"),
        }
    }

    #[test]
    fn cidr_parses_and_displays_canonically() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::1/128").to_string(), "::1/128");
        assert_eq!(cidr("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr(" 192.168.1.7/24 ").to_string(), "192.168.1.0/24");
        assert_eq!(
            cidr("2001:DB8:0:0::1/32").to_string(),
            "2001:db8::/32",
            "IPv6 is shown in RFC 5952 form"
        );
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(cidr("10.0.0.0/8").prefix_len(), 8);
        assert_eq!(cidr("10.9.0.0/8").addr(), ip("10.0.0.0"));
        assert_eq!(Cidr::new(ip("10.9.9.9"), 16).unwrap(), cidr("10.9.0.0/16"));
        assert!(Cidr::new(ip("10.9.9.9"), 33).is_err());
    }

    #[test]
    fn cidr_errors_name_the_text() {
        for (bad, needle) in [
            ("", "empty"),
            ("10.0.0.0/33", "larger than 32"),
            ("::/129", "larger than 128"),
            ("10.0.0.0/", "not a number"),
            ("10.0.0.0/+8", "not a number"),
            ("10.0.0.0/x", "not a number"),
            ("10.0.0.0/8/8", "not a number"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("example.com", "not an IPv4 or IPv6 address"),
            ("fe80::1%eth0", "not an IPv4 or IPv6 address"),
            ("[::1]/128", "not an IPv4 or IPv6 address"),
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert_eq!(err.text(), bad);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
    }

    #[test]
    fn cidr_contains() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        assert!(!net.contains(ip("::ffff:10.0.0.1")), "families never mix");
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("2606:4700::1")));
        assert!(cidr("fe80::/10").contains(ip("febf:ffff::1")));
        assert!(!cidr("fe80::/10").contains(ip("fec0::1")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
    }

    #[test]
    fn cidr_serde_round_trips_as_string() {
        #[derive(Serialize, Deserialize)]
        struct Conf {
            allow: Vec<Cidr>,
        }
        let conf: Conf =
            serde_json::from_str(r#"{"allow":["10.1.0.0/16","::1","127.0.0.1/8"]}"#).unwrap();
        assert_eq!(
            conf.allow,
            vec![cidr("10.1.0.0/16"), cidr("::1/128"), cidr("127.0.0.0/8")]
        );
        assert_eq!(
            serde_json::to_string(&conf).unwrap(),
            r#"{"allow":["10.1.0.0/16","::1/128","127.0.0.0/8"]}"#
        );
        let err = serde_json::from_str::<Conf>(r#"{"allow":["10.0.0.0/40"]}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("10.0.0.0/40"), "{err}");
        let toml_conf: Conf = toml::from_str("allow = [\"192.168.0.0/16\"]").unwrap();
        assert_eq!(toml_conf.allow, vec![cidr("192.168.0.0/16")]);
    }

    #[test]
    fn every_ipv4_range_is_blocked_at_both_ends() {
        let p = AddressPolicy::default();
        for (first, last, name) in [
            ("0.0.0.0", "0.255.255.255", "\"this network\" (0.0.0.0/8)"),
            ("10.0.0.0", "10.255.255.255", "private (RFC 1918)"),
            (
                "100.64.0.0",
                "100.127.255.255",
                "shared address space (CGNAT)",
            ),
            ("127.0.0.0", "127.255.255.255", "loopback"),
            (
                "169.254.0.0",
                "169.254.255.255",
                "link-local (cloud metadata)",
            ),
            ("172.16.0.0", "172.31.255.255", "private (RFC 1918)"),
            ("192.0.0.0", "192.0.0.255", "IETF protocol assignments"),
            ("192.0.2.0", "192.0.2.255", "documentation (TEST-NET-1)"),
            (
                "198.51.100.0",
                "198.51.100.255",
                "documentation (TEST-NET-2)",
            ),
            ("203.0.113.0", "203.0.113.255", "documentation (TEST-NET-3)"),
            ("192.88.99.0", "192.88.99.255", "6to4 relay anycast"),
            ("192.168.0.0", "192.168.255.255", "private (RFC 1918)"),
            ("198.18.0.0", "198.19.255.255", "benchmarking"),
            ("224.0.0.0", "239.255.255.255", "multicast"),
            ("240.0.0.0", "255.255.255.254", "reserved (240.0.0.0/4)"),
            ("255.255.255.255", "255.255.255.255", "broadcast"),
        ] {
            assert_eq!(blocked_as(&p, first), name, "{first}");
            assert_eq!(blocked_as(&p, last), name, "{last}");
        }
        assert_eq!(
            blocked_as(&p, "169.254.169.254"),
            "link-local (cloud metadata)"
        );
    }

    #[test]
    fn ipv4_neighbours_of_blocked_ranges_are_allowed() {
        let p = AddressPolicy::default();
        for addr in [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "1.1.1.1",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn every_ipv6_range_is_blocked() {
        let p = AddressPolicy::default();
        for (addr, name) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique-local (ULA)"),
            (
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "unique-local (ULA)",
            ),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local (deprecated)"),
            ("feff::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001:db8:ffff::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard-only"),
            ("100::ffff:ffff:ffff:ffff", "discard-only"),
            ("2001::1", "IETF protocol assignments"),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "IETF protocol assignments",
            ),
            ("2001:1ff::1", "IETF protocol assignments"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("64:ff9b:1:ffff::1", "local-use NAT64"),
            ("::ffff:0:7f00:1", "reserved (outside 2000::/3)"),
            ("1234::1", "reserved (outside 2000::/3)"),
            ("4000::1", "reserved (outside 2000::/3)"),
            ("100:0:0:1::1", "reserved (outside 2000::/3)"),
            ("64:ff9b:2::1", "reserved (outside 2000::/3)"),
        ] {
            assert_eq!(blocked_as(&p, addr), name, "{addr}");
        }
    }

    #[test]
    fn ipv6_neighbours_and_public_addresses_are_allowed() {
        let p = AddressPolicy::default();
        for addr in [
            "2606:4700::1",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2a00:1450::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_in_every_encoding() {
        let p = AddressPolicy::default();
        for (addr, name, encoding, inner) in [
            ("::ffff:127.0.0.1", "loopback", "IPv4-mapped", "127.0.0.1"),
            ("::ffff:7f00:1", "loopback", "IPv4-mapped", "127.0.0.1"),
            (
                "::ffff:10.0.0.1",
                "private (RFC 1918)",
                "IPv4-mapped",
                "10.0.0.1",
            ),
            (
                "::ffff:169.254.169.254",
                "link-local (cloud metadata)",
                "IPv4-mapped",
                "169.254.169.254",
            ),
            (
                "::ffff:0.0.0.0",
                "\"this network\" (0.0.0.0/8)",
                "IPv4-mapped",
                "0.0.0.0",
            ),
            ("::127.0.0.1", "loopback", "IPv4-compatible", "127.0.0.1"),
            ("::7f00:1", "loopback", "IPv4-compatible", "127.0.0.1"),
            (
                "::0.0.0.2",
                "\"this network\" (0.0.0.0/8)",
                "IPv4-compatible",
                "0.0.0.2",
            ),
            (
                "::192.168.1.1",
                "private (RFC 1918)",
                "IPv4-compatible",
                "192.168.1.1",
            ),
            (
                "64:ff9b::a9fe:a9fe",
                "link-local (cloud metadata)",
                "NAT64",
                "169.254.169.254",
            ),
            ("64:ff9b::127.0.0.1", "loopback", "NAT64", "127.0.0.1"),
            (
                "64:ff9b::10.1.2.3",
                "private (RFC 1918)",
                "NAT64",
                "10.1.2.3",
            ),
            ("2002:7f00:0001::1", "loopback", "6to4", "127.0.0.1"),
            (
                "2002:a9fe:a9fe:1234::1",
                "link-local (cloud metadata)",
                "6to4",
                "169.254.169.254",
            ),
            (
                "2002:c0a8:0101::",
                "private (RFC 1918)",
                "6to4",
                "192.168.1.1",
            ),
            ("2002:e000::1", "multicast", "6to4", "224.0.0.0"),
        ] {
            let b = p.check(ip(addr)).expect_err(addr);
            assert_eq!(b.range, name, "{addr}");
            assert_eq!(
                b.embedded,
                Some((encoding, inner.parse().unwrap())),
                "{addr}"
            );
        }
        for addr in [
            "::ffff:8.8.8.8",
            "::ffff:808:808",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_list_exempts_as_written_and_embedded() {
        let p = AddressPolicy::new(vec![cidr("127.0.0.0/8")]);
        for addr in [
            "127.0.0.1",
            "127.8.9.10",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "2002:7f00:0001::1",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
        // Only the allowed range is opened.
        assert_eq!(blocked_as(&p, "::1"), "loopback");
        assert_eq!(blocked_as(&p, "10.0.0.1"), "private (RFC 1918)");
        assert_eq!(blocked_as(&p, "::ffff:10.0.0.1"), "private (RFC 1918)");

        let p = AddressPolicy::new(vec![cidr("::1"), cidr("10.1.0.0/16"), cidr("fd00::/8")]);
        assert_eq!(p.check(ip("::1")), Ok(()));
        assert_eq!(p.check(ip("10.1.200.3")), Ok(()));
        assert_eq!(p.check(ip("::ffff:10.1.200.3")), Ok(()));
        assert_eq!(p.check(ip("fd12::1")), Ok(()));
        assert_eq!(blocked_as(&p, "10.2.0.1"), "private (RFC 1918)");
        assert_eq!(blocked_as(&p, "fc00::1"), "unique-local (ULA)");
        assert_eq!(blocked_as(&p, "127.0.0.1"), "loopback");
        assert_eq!(p.allow().len(), 3);

        // An IPv6 allow entry written in mapped form also works as written.
        let p = AddressPolicy::new(vec![cidr("::ffff:127.0.0.0/104")]);
        assert_eq!(p.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(blocked_as(&p, "127.0.0.1"), "loopback");

        // Allowing everything disables the policy.
        let p = AddressPolicy::new(vec![cidr("0.0.0.0/0"), cidr("::/0")]);
        for addr in ["127.0.0.1", "::1", "169.254.169.254", "2001::1", "ff02::1"] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn blocked_messages_read_well() {
        let p = AddressPolicy::default();
        assert_eq!(
            p.check(ip("10.1.2.3")).unwrap_err().to_string(),
            "10.1.2.3 is in a private (RFC 1918) range; add it to delivery.allow_networks to allow it"
        );
        assert_eq!(
            p.check(ip("::")).unwrap_err().to_string(),
            ":: is in an unspecified range; add it to delivery.allow_networks to allow it"
        );
        assert_eq!(
            p.check(ip("fd00::1")).unwrap_err().to_string(),
            "fd00::1 is in a unique-local (ULA) range; add it to delivery.allow_networks to allow it"
        );
        assert_eq!(
            p.check(ip("2002:7f00:1::1")).unwrap_err().to_string(),
            "2002:7f00:1::1 (6to4 127.0.0.1) is in a loopback range; \
             add it to delivery.allow_networks to allow it"
        );
        let b = p.check(ip("169.254.169.254")).unwrap_err();
        assert_eq!(b.ip, ip("169.254.169.254"));
        assert!(b.to_string().contains("link-local (cloud metadata)"));
    }
}
