//! Connections per client address: one client (one address) may hold at most so many, so
//! that it cannot take every slot of a server or of the line protocol.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts the open connections of each client address, up to a limit.
#[derive(Debug)]
pub struct ConnectionsPerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionsPerAddress {
    /// At most `limit` connections per address; 0 for no limit.
    pub fn new(limit: usize) -> Arc<ConnectionsPerAddress> {
        Arc::new(ConnectionsPerAddress {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `address`, held until the guard is dropped;
    /// `None` when the address holds its limit already.
    pub fn claim(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        if self.limit == 0 {
            return Some(AddressSlot {
                owner: None,
                address,
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            owner: Some(Arc::clone(self)),
            address,
        })
    }

    /// The most connections one address may hold (0: no limit).
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One connection's place under its address's limit; given back when dropped.
#[derive(Debug)]
#[must_use = "the place is given back when this is dropped"]
pub struct AddressSlot {
    owner: Option<Arc<ConnectionsPerAddress>>,
    address: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(owner) = &self.owner else { return };
        let mut open = owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_places_back() {
        let limits = ConnectionsPerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.claim(a).unwrap();
        let _second = limits.claim(a).unwrap();
        assert!(limits.claim(a).is_none(), "a third from the same address");
        assert!(limits.claim(b).is_some(), "another address is not affected");
        drop(first);
        assert!(
            limits.claim(a).is_some(),
            "a closed connection gives its place back"
        );
        let open = ConnectionsPerAddress::new(0);
        let many: Vec<_> = (0..100).map(|_| open.claim(a).unwrap()).collect();
        assert_eq!(many.len(), 100);
    }
}
