//! Argon2id password hashing, off the async runtime and bounded by a semaphore so a sign-in
//! storm cannot starve message routing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use super::config::PasswordParams;
use crate::error::{Error, Result};

/// Hashes and verifies passwords as PHC strings.
#[derive(Debug, Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// Hashes computing now, and the most there ever were at once.
    running: Arc<Running>,
    /// A hash with the current parameters, verified against when the user is unknown so that
    /// costs the same time as a wrong password.
    dummy: Arc<OnceCell<String>>,
}

#[derive(Debug, Default)]
struct Running {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts one hash computing for as long as it lives.
struct Computing(Arc<Running>);

impl Computing {
    fn start(running: &Arc<Running>) -> Self {
        let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
        running.peak.fetch_max(now, Ordering::SeqCst);
        Self(running.clone())
    }
}

impl Drop for Computing {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Passwords {
    /// The most hashes that ever computed at once (never above the limit).
    pub fn peak_concurrent(&self) -> usize {
        self.running.peak.load(Ordering::SeqCst)
    }

    /// A hasher with `params`, computing at most `max_concurrent` hashes at once.
    pub fn new(params: PasswordParams, max_concurrent: usize) -> Result<Self> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| Error::Config(format!("invalid Argon2 parameters: {e}")))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            running: Arc::default(),
            dummy: Arc::new(OnceCell::new()),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        // The permit moves into the blocking task: a caller that gives up (a dropped request)
        // does not stop the hashing already started, so neither may it free the permit.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("password hasher closed".into()))?;
        let running = self.running.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _computing = Computing::start(&running);
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))
    }

    /// Hashes `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.run_blocking(move || {
            Self::argon2(params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
        })
        .await?
    }

    /// Whether `password` matches the PHC string `hash` (whose own parameters are used).
    /// A malformed stored hash is an internal error, not a mismatch.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        let params = self.params.clone();
        let password = password.to_owned();
        let hash = hash.to_owned();
        self.run_blocking(move || {
            match Self::argon2(params).verify_password(password.as_bytes(), hash.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(Error::Internal(format!("stored password hash is unusable: {e}"))),
            }
        })
        .await?
    }

    /// Spends the time a verification takes, for a user who does not exist.
    pub async fn verify_dummy(&self, password: &str) -> Result<()> {
        let dummy = self
            .dummy
            .get_or_try_init(|| self.hash("dummy password for unknown users"))
            .await?
            .clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(PasswordParams { memory_kib: 1024, iterations: 1, parallelism: 1 }, 2)
            .unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let p = cheap();
        let hash = p.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(p.verify("correct horse", &hash).await.unwrap());
        assert!(!p.verify("wrong horse", &hash).await.unwrap());
        assert_ne!(hash, p.hash("correct horse").await.unwrap(), "salts differ");
        assert!(p.verify("x", "not a phc string").await.is_err());
        p.verify_dummy("anything").await.unwrap();
    }

    /// Callers that give up mid-hash do not let more hashes run than the limit allows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_requests_never_raise_the_hashes_running_at_once() {
        let p = Passwords::new(
            PasswordParams { memory_kib: 8 * 1024, iterations: 2, parallelism: 1 },
            2,
        )
        .unwrap();
        let hash = p.hash("x").await.unwrap();
        for _ in 0..20 {
            let p = p.clone();
            let hash = hash.clone();
            // Each request is dropped almost at once, while its hash is still computing.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(1), async move {
                p.verify("guess", &hash).await
            })
            .await;
        }
        // Whatever was started finishes; then a last one goes through.
        assert!(p.verify("x", &hash).await.unwrap());
        assert!(p.peak_concurrent() <= 2, "peak {}", p.peak_concurrent());
    }

    #[test]
    fn defaults_are_owasp() {
        let d = PasswordParams::default();
        assert_eq!((d.memory_kib, d.iterations, d.parallelism), (19_456, 2, 1));
        assert!(
            Passwords::new(PasswordParams { memory_kib: 1, iterations: 0, parallelism: 0 }, 1)
                .is_err()
        );
    }
}
