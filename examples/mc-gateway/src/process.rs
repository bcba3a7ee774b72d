//! The metrics a gateway's heartbeat carries about its own process.

use mc_core::GatewayMetrics;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Samples this process's memory and CPU; CPU is averaged since the previous sample.
pub struct ProcessSampler {
    system: Option<System>,
    pid: Pid,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessSampler {
    /// A sampler for the current process.
    pub fn new() -> Self {
        let mut sampler =
            Self { system: System::new().ok(), pid: Pid::from_u32(std::process::id()) };
        sampler.refresh();
        sampler
    }

    fn refresh(&mut self) {
        if let Some(system) = &mut self.system {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[self.pid]),
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
        }
    }

    /// Current figures, with the given session and agent counts.
    pub fn sample(&mut self, active_sessions: u32, agent_count: u32) -> GatewayMetrics {
        self.refresh();
        let (memory_mb, cpu_pct) = self
            .system
            .as_ref()
            .and_then(|s| s.process(self.pid))
            .map(|p| (p.memory() as f64 / (1024.0 * 1024.0), f64::from(p.cpu_usage())))
            .unwrap_or((0.0, 0.0));
        GatewayMetrics { active_sessions, memory_mb, cpu_pct, agent_count }
    }
}
