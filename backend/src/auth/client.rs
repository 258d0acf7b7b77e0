//! Who the client is: this site's cookie names and the client address
//! (the socket peer, or what the trusted proxies saw). The extractors that
//! read a request live at the edges (`http::extract`, `api::extract`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::config::TrustedProxies;

/// The cookies this site sets (besides the CSRF layer's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteCookie {
    /// The signed-in session.
    Session,
    /// The notice a redirect leaves for the next page.
    Flash,
    /// A single sign-on under way (sealed).
    Sso,
    /// A secret the next page shows once (sealed, `http::once`).
    Once,
}

impl SiteCookie {
    /// Its name: `__Host-` prefixed (and so `Secure`, `Path=/` and bound to
    /// this host) when served over https.
    pub fn name(self, secure: bool) -> &'static str {
        match (self, secure) {
            (Self::Session, true) => "__Host-rollway_session",
            (Self::Session, false) => "rollway_session",
            (Self::Flash, true) => "__Host-rollway_flash",
            (Self::Flash, false) => "rollway_flash",
            (Self::Sso, true) => "__Host-rollway_sso",
            (Self::Sso, false) => "rollway_sso",
            (Self::Once, true) => "__Host-rollway_once",
            (Self::Once, false) => "rollway_once",
        }
    }
}

/// The client's address: the socket peer, or — behind trusted proxies —
/// the address the outermost trusted proxy saw.
pub fn client_ip(parts: &Parts, trusted: &TrustedProxies) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if *trusted == TrustedProxies::None {
        return peer;
    }
    // Several X-Forwarded-For headers are one list, in order.
    let chain: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded_client(peer, &chain, trusted)
}

/// Picks the client out of an `X-Forwarded-For` chain. Each proxy appends
/// the address it received from, so only the entries the trusted proxies
/// appended — counted from the right — can be believed; everything to
/// their left was written by whoever sent the request. A malformed entry
/// where the client should be leaves the peer as the client.
pub fn forwarded_client(peer: IpAddr, chain: &[&str], trusted: &TrustedProxies) -> IpAddr {
    let parse = |entry: &str| -> Option<IpAddr> {
        entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .or_else(|| {
                entry
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .and_then(|v| v.parse().ok())
            })
    };
    match trusted {
        TrustedProxies::None => peer,
        TrustedProxies::Hops(hops) => {
            // The peer is the last proxy; the entry `hops` from the right
            // was appended by the first one and is what it saw.
            if chain.is_empty() {
                return peer;
            }
            let at = chain.len().saturating_sub(*hops);
            parse(chain[at]).unwrap_or(peer)
        }
        TrustedProxies::Networks(networks) => {
            let is_proxy = |ip: &IpAddr| networks.iter().any(|n| n.contains(ip));
            if !is_proxy(&peer) {
                return peer;
            }
            let mut client = peer;
            for entry in chain.iter().rev() {
                match parse(entry) {
                    Some(ip) if is_proxy(&ip) => client = ip,
                    Some(ip) => return ip,
                    None => return client,
                }
            }
            client
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_what_the_trusted_proxies_saw_never_what_it_wrote() {
        let peer = ip("10.0.0.2");
        let hops = |n| TrustedProxies::Hops(n);
        // One proxy: the rightmost entry is what it saw; a forged entry to
        // its left changes nothing.
        assert_eq!(
            forwarded_client(peer, &["203.0.113.9"], &hops(1)),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "203.0.113.9"], &hops(1)),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "203.0.113.9", "10.0.0.1"], &hops(2)),
            ip("203.0.113.9")
        );
        assert_eq!(forwarded_client(peer, &[], &hops(1)), peer);
        assert_eq!(forwarded_client(peer, &["garbage"], &hops(1)), peer);
        assert_eq!(
            forwarded_client(peer, &["[2001:db8::1]:443"], &hops(1)),
            ip("2001:db8::1")
        );
        assert_eq!(
            forwarded_client(peer, &["203.0.113.9:5555"], &hops(1)),
            ip("203.0.113.9")
        );
        // Networks: skip trusted proxies from the right; a peer that is not
        // a proxy is the client whatever it sends.
        let nets = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "203.0.113.9", "10.0.0.7"], &nets),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &["1.2.3.4"], &nets),
            ip("198.51.100.1")
        );
        assert_eq!(
            forwarded_client(peer, &["10.0.0.9", "10.0.0.8"], &nets),
            ip("10.0.0.9")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4", "bad", "10.0.0.8"], &nets),
            ip("10.0.0.8")
        );
        assert_eq!(
            forwarded_client(peer, &["1.2.3.4"], &TrustedProxies::None),
            peer
        );
    }
}
