//! The liveness sweeper: one loop per process, one store statement per sweep.

use std::future::Future;

use super::RegistryService;

impl RegistryService {
    /// Sweeps every `sweep_every` until `shutdown` completes. Run one per process (spawn it
    /// next to the server); several instances sweeping the same database is harmless, since
    /// each gateway changes status once. A failed sweep is logged and retried next time.
    pub async fn run_liveness(&self, shutdown: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(self.config.sweep_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {
                    if let Err(err) = self.sweep().await {
                        tracing::warn!(error = %err, "liveness sweep failed; retrying next tick");
                    }
                }
            }
        }
        tracing::debug!("liveness sweeper stopped");
    }
}
