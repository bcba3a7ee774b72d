//! [`PreAuthGate`]: sockets that have not authenticated yet (users' and gateways') have caps
//! of their own — in all, and per source IP — so idle unauthenticated sockets cannot take the
//! slots signed-in users need. A socket holds its [`PreAuthPass`] until it authenticates or
//! goes away.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The caps on unauthenticated sockets.
#[derive(Debug, Clone)]
pub(crate) struct PreAuthGate {
    total: Arc<Semaphore>,
    per_ip: PerIp,
    per_ip_cap: usize,
}

/// One unauthenticated socket's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PreAuthPass {
    _permit: OwnedSemaphorePermit,
    ip: Option<IpAddr>,
    per_ip: PerIp,
}

fn lock(per_ip: &PerIp) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
    per_ip.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for PreAuthPass {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut counts = lock(&self.per_ip);
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

impl PreAuthGate {
    /// At most `total` unauthenticated sockets, and `per_ip` from one address.
    pub(crate) fn new(total: usize, per_ip: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_ip: Arc::default(),
            per_ip_cap: per_ip.max(1),
        }
    }

    /// A place for a socket from `ip`, unless a cap is reached.
    pub(crate) fn enter(&self, ip: Option<IpAddr>) -> Option<PreAuthPass> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        if let Some(ip) = ip {
            let mut counts = lock(&self.per_ip);
            let n = counts.entry(ip).or_insert(0);
            if *n >= self.per_ip_cap {
                return None;
            }
            *n += 1;
        }
        Some(PreAuthPass { _permit: permit, ip, per_ip: self.per_ip.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address() {
        let gate = PreAuthGate::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = gate.enter(Some(a)).unwrap();
        let _a2 = gate.enter(Some(a)).unwrap();
        assert!(gate.enter(Some(a)).is_none(), "two per address");
        let _b1 = gate.enter(Some(b)).unwrap();
        assert!(gate.enter(Some(b)).is_none(), "three in all");
        drop(a1);
        assert!(gate.enter(Some(a)).is_some(), "a place freed is reusable");
    }
}
