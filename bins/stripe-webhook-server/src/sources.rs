//! Where a request comes from, and whether it may post: `TRUSTED_PROXIES` (whose
//! `X-Forwarded-For` to believe) and `ALLOWED_SOURCE_IPS` (who may post a webhook).
//!
//! The client of a request is its peer address, unless the peer is a trusted proxy: then
//! `X-Forwarded-For` is read from the right (the hop nearest to this server) and the first address
//! that is not itself a trusted proxy is the client. A header sent by anyone else is ignored, so a
//! client cannot claim an address by sending the header itself.

use std::net::IpAddr;
use std::path::Path;

use http::HeaderMap;
use ipnet::IpNet;

/// Stripe's published webhook source addresses, bundled for `ALLOWED_SOURCE_IPS=stripe`, as
/// listed in <https://stripe.com/files/ips/ips_webhooks.txt> (linked from
/// <https://docs.stripe.com/ips#webhook-notifications>) on [`STRIPE_WEBHOOK_IPS_AS_OF`]. Stripe
/// announces changes seven days ahead on its API announce list; refresh without a release by
/// pointing `ALLOWED_SOURCE_IPS` at a file holding the current list (docs/exposure.md).
pub const STRIPE_WEBHOOK_IPS: &[&str] = &[
    "3.18.12.63",
    "3.69.109.8",
    "3.120.168.93",
    "3.130.192.231",
    "13.235.14.237",
    "13.235.122.149",
    "18.211.135.69",
    "35.154.171.200",
    "35.157.207.129",
    "52.15.183.38",
    "54.88.130.119",
    "54.88.130.237",
    "54.187.174.169",
    "54.187.205.235",
    "54.187.216.72",
];

/// The date of the list in [`STRIPE_WEBHOOK_IPS`].
pub const STRIPE_WEBHOOK_IPS_AS_OF: &str = "2026-05-15";

/// The private and local ranges, for `TRUSTED_PROXIES=private` (a proxy or load balancer in the
/// same private network: an ALB in a VPC, a platform's internal router).
const PRIVATE: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
];

/// A set of addresses and ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSet(Vec<IpNet>);

impl IpSet {
    /// Parses a list separated by commas or whitespace. Each member is an address (`192.0.2.1`,
    /// `2001:db8::1`), a range (`192.0.2.0/24`), a keyword (`stripe`: [`STRIPE_WEBHOOK_IPS`];
    /// `private`: the private and loopback ranges), or the path of a file (starting with `/` or
    /// `.`) holding such members, one or more a line, `#` starting a comment.
    ///
    /// # Errors
    /// The first member that is none of these, or a file that cannot be read, as a message.
    pub fn parse(list: &str) -> Result<IpSet, String> {
        let mut nets = Vec::new();
        add(list, &mut nets, true)?;
        Ok(IpSet(nets))
    }

    /// Whether `ip` is in the set (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// How many addresses and ranges the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn add(list: &str, nets: &mut Vec<IpNet>, files: bool) -> Result<(), String> {
    for member in list.split(|c: char| c == ',' || c.is_whitespace()) {
        match member {
            "" => {}
            "stripe" => nets.extend(STRIPE_WEBHOOK_IPS.iter().map(|ip| parse_net(ip).expect("bundled"))),
            "private" => nets.extend(PRIVATE.iter().map(|net| parse_net(net).expect("bundled"))),
            path if files && (path.starts_with('/') || path.starts_with('.')) => {
                let text = std::fs::read_to_string(Path::new(path))
                    .map_err(|e| format!("cannot read the address list {path}: {e}"))?;
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or_default();
                    add(line, nets, false).map_err(|e| format!("{path}: {e}"))?;
                }
            }
            other => nets.push(parse_net(other).ok_or_else(|| {
                format!("{other:?} is not an IP address, a range (CIDR), `stripe`, `private` or a file path")
            })?),
        }
    }
    Ok(())
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

/// Who may post, and whose forwarded-for header to believe.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `ALLOWED_SOURCE_IPS`: `None` lets every address post.
    pub allowed: Option<IpSet>,
    /// `TRUSTED_PROXIES`.
    pub trusted: IpSet,
}

impl Sources {
    /// Whether `peer` is a trusted proxy.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.contains(peer)
    }

    /// The client address of a request from `peer` (see the module docs).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop a trusted proxy wrote that is not an address (`unknown`, a port): stop there,
            // at the last address known.
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// Whether a request from `client` may post a webhook.
    pub fn allows(&self, client: IpAddr) -> bool {
        self.allowed.as_ref().is_none_or(|set| set.contains(client))
    }
}

/// An `X-Forwarded-For` member: an address, possibly with a port (`192.0.2.1:1234`,
/// `[2001:db8::1]:1234`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn lists_parse_addresses_ranges_keywords_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ips.txt");
        std::fs::write(&file, "# Stripe\n3.18.12.63\n198.51.100.0/24 # a range\n\n").unwrap();
        let set = IpSet::parse(&format!("192.0.2.1, 2001:db8::/32 {}", file.display())).unwrap();
        assert_eq!(set.len(), 4);
        assert!(set.contains(ip("192.0.2.1")));
        assert!(!set.contains(ip("192.0.2.2")));
        assert!(set.contains(ip("2001:db8::7")));
        assert!(set.contains(ip("198.51.100.99")));
        assert!(set.contains(ip("::ffff:3.18.12.63")), "IPv4-mapped");
        let stripe = IpSet::parse("stripe").unwrap();
        assert_eq!(stripe.len(), STRIPE_WEBHOOK_IPS.len());
        assert!(stripe.contains(ip("54.187.216.72")));
        assert!(IpSet::parse("private").unwrap().contains(ip("10.1.2.3")));
        for bad in ["3.18.12", "stripe.com", "192.0.2.0/33", "/nonexistent/list"] {
            assert!(IpSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right_and_only_behind_a_trusted_proxy() {
        let sources = Sources {
            allowed: Some(IpSet::parse("stripe").unwrap()),
            trusted: IpSet::parse("10.0.0.0/8").unwrap(),
        };
        let proxy = ip("10.0.0.5");
        let attacker = ip("203.0.113.9");
        // Behind the trusted proxy: the address it appended.
        let h = xff(&["3.18.12.63"]);
        assert_eq!(sources.client(proxy, &h), ip("3.18.12.63"));
        // A spoofed leftmost hop is not believed: the proxy appended the real one.
        let h = xff(&["3.18.12.63, 203.0.113.9"]);
        assert_eq!(sources.client(proxy, &h), attacker);
        // Chained trusted proxies are skipped, across several header lines.
        let h = xff(&["3.18.12.63", "10.1.1.1"]);
        assert_eq!(sources.client(proxy, &h), ip("3.18.12.63"));
        // A hop with a port.
        let h = xff(&["3.18.12.63:443"]);
        assert_eq!(sources.client(proxy, &h), ip("3.18.12.63"));
        // From an untrusted peer the header is ignored.
        let h = xff(&["3.18.12.63"]);
        assert_eq!(sources.client(attacker, &h), attacker);
        assert!(!sources.allows(attacker));
        // Nothing forwarded: the proxy itself.
        assert_eq!(sources.client(proxy, &HeaderMap::new()), proxy);
        assert!(Sources::default().allows(attacker), "unset: everyone");
    }
}
