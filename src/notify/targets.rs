//! Where webhooks may point. Patients, hospitals and researchers register
//! webhook URLs, and the dispatcher POSTs to them from inside the
//! deployment's network. Unless an operator allows private targets, only
//! public unicast addresses are reachable, so a registered URL cannot make
//! the service call its own database, a cloud metadata endpoint or another
//! internal system (server-side request forgery).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 0.0.0.0/8 ("this network"), 100.64.0.0/10 (carrier-grade NAT),
        // 198.18.0.0/15 (benchmarking), 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // 2001:db8::/32, documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// Refuses a port outside `allowed`; an empty list allows every port.
/// `port` is the URL's, or its scheme's default (`None`: neither).
pub fn check_port(port: Option<u16>, allowed: &[u16]) -> Result<(), &'static str> {
    if allowed.is_empty() || port.is_some_and(|p| allowed.contains(&p)) {
        Ok(())
    } else {
        Err("names a port webhooks may not use")
    }
}

/// Refuses a URL whose host is written as a non-public address or names
/// this machine; what a name resolves to is checked again at each delivery.
pub fn check_host(host: &str) -> Result<(), &'static str> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if is_public(ip) {
            Ok(())
        } else {
            Err("points to a private, local or reserved address")
        };
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Err("points to this machine");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_the_list_are_refused_and_an_empty_list_allows_all() {
        assert!(check_port(Some(443), &[443]).is_ok());
        assert!(check_port(Some(8443), &[443, 8443]).is_ok());
        for refused in [Some(22), Some(5432), Some(80), None] {
            assert!(check_port(refused, &[443]).is_err(), "{refused:?}");
        }
        assert!(check_port(Some(5432), &[]).is_ok());
        assert!(check_port(None, &[]).is_ok());
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(
                !is_public(private.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))),
                "{private}"
            );
        }
        for public in [
            "8.8.8.8",
            "133.11.0.1",
            "2404:6800:4004::200e",
            "::ffff:8.8.4.4",
        ] {
            assert!(
                is_public(public.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))),
                "{public}"
            );
        }
    }

    #[test]
    fn hosts_written_as_local_addresses_or_localhost_are_refused() {
        assert!(check_host("127.0.0.1").is_err());
        assert!(check_host("[::1]").is_err());
        assert!(check_host("LocalHost.").is_err());
        assert!(check_host("api.localhost").is_err());
        assert!(check_host("hooks.hospital.example").is_ok());
        assert!(check_host("8.8.8.8").is_ok());
    }
}
