//! Whose `X-Forwarded-For` the HTTP API believes: the API server's (its service proxy, the path
//! kubeseal takes, appends the client's address), found in the `kubernetes` EndpointSlice, and
//! the `--trusted-proxies` list. Any other peer is the client itself, so a client that reaches
//! the Pod directly cannot choose whose rate limit it spends.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};

/// How often the API server's addresses are read again.
const REFRESH: Duration = Duration::from_secs(60);

/// An address block: an address and how many leading bits of it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    address: IpAddr,
    bits: u8,
}

impl Block {
    fn parse(text: &str) -> Result<Block, String> {
        let invalid = || format!("{} is not an IP address or CIDR block", sealant_core::error::quoted(text));
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits.parse::<u8>().map_err(|_| invalid())?)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(invalid());
        }
        Ok(Block { address, bits })
    }

    fn contains(&self, peer: IpAddr) -> bool {
        let prefix = |a: u128, b: u128, width: u32| {
            let shift = width - u32::from(self.bits);
            shift >= width || (a >> shift) == (b >> shift)
        };
        match (self.address, peer.to_canonical()) {
            (IpAddr::V4(block), IpAddr::V4(peer)) => {
                prefix(u128::from(u32::from(block)), u128::from(u32::from(peer)), 32)
            }
            (IpAddr::V6(block), IpAddr::V6(peer)) => prefix(u128::from(block), u128::from(peer), 128),
            _ => false,
        }
    }
}

/// The peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Default)]
pub struct TrustedProxies {
    /// `--trusted-proxies`.
    configured: Vec<Block>,
    /// The API server's addresses, as its `kubernetes` EndpointSlice lists them.
    api_servers: RwLock<Vec<IpAddr>>,
}

impl TrustedProxies {
    /// From `--trusted-proxies`: addresses and CIDR blocks, separated by commas.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let configured =
            list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Block::parse).collect::<Result<_, _>>()?;
        Ok(TrustedProxies { configured, api_servers: RwLock::default() })
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.configured.iter().any(|b| b.contains(peer))
            || self.api_servers.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&peer)
    }

    fn set_api_servers(&self, addresses: Vec<IpAddr>) {
        *self.api_servers.write().unwrap_or_else(std::sync::PoisonError::into_inner) = addresses;
    }

    /// Keep the API server's addresses current, from `default/kubernetes`'s EndpointSlice. Where
    /// RBAC does not allow reading it (upstream's chart), says so once and believes only
    /// `--trusted-proxies`.
    pub async fn follow_api_servers(self: Arc<Self>, client: Client) -> crate::Result<()> {
        let slices = Api::<EndpointSlice>::namespaced(client, "default");
        let mut said = false;
        loop {
            match crate::api::answered(slices.get_opt("kubernetes")).await {
                Ok(slice) => {
                    let addresses: Vec<IpAddr> = slice
                        .iter()
                        .flat_map(|s| &s.endpoints)
                        .flat_map(|e| &e.addresses)
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    if !said {
                        tracing::info!(api_servers = ?addresses, "believing X-Forwarded-For from the API server");
                        said = true;
                    }
                    self.set_api_servers(addresses);
                }
                Err(e) => {
                    if !said {
                        let why = match &e {
                            kube::Error::Api(status) if status.code == 403 => "RBAC does not allow it".to_owned(),
                            other => sealant_core::error::one_line(other.to_string(), std::error::Error::source(other)),
                        };
                        tracing::warn!(
                            error = %why,
                            "cannot read the API server's addresses (EndpointSlice default/kubernetes): \
                             X-Forwarded-For is believed only from --trusted-proxies; requests through \
                             the API server share its address's rate limit"
                        );
                        said = true;
                    }
                }
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_addresses() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7,fd00::/64").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(trusted.trusts(ip("10.200.3.4")));
        assert!(trusted.trusts(ip("::ffff:10.1.1.1")), "an IPv4-mapped peer is its IPv4 address");
        assert!(trusted.trusts(ip("192.168.1.7")));
        assert!(!trusted.trusts(ip("192.168.1.8")));
        assert!(trusted.trusts(ip("fd00::1234")));
        assert!(!trusted.trusts(ip("fd01::1")));
        assert!(!trusted.trusts(ip("11.0.0.1")));
        assert!(TrustedProxies::parse("0.0.0.0/0").unwrap().trusts(ip("8.8.8.8")));
        assert!(!TrustedProxies::default().trusts(ip("10.0.0.1")), "no one by default");
        for bad in ["10.0.0.0/33", "host.example", "10.0.0.1/x"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        trusted.set_api_servers(vec![ip("172.16.0.1")]);
        assert!(trusted.trusts(ip("172.16.0.1")));
    }
}
