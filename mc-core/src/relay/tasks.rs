//! [`Tasks`]: the background tasks of one relay, owned by it: dropping the relay aborts every
//! one still running. Tasks hold the relay only weakly (or only while they work), so they
//! never keep it alive.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::AbortHandle;

/// How many spawns between sweeps of finished tasks' handles.
const PRUNE_EVERY: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Tasks {
    handles: Mutex<(Vec<AbortHandle>, usize)>,
}

impl Tasks {
    /// Spawns `task`, owned by this set.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut guard = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        let (handles, spawned) = &mut *guard;
        *spawned += 1;
        if *spawned % PRUNE_EVERY == 0 {
            handles.retain(|h| !h.is_finished());
        }
        handles.push(handle);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in self.handles.lock().unwrap_or_else(|p| p.into_inner()).0.drain(..) {
            handle.abort();
        }
    }
}
