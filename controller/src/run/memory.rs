//! The allocator's share of the controller's memory. glibc's malloc keeps what the program frees
//! for reuse, and it raises its mmap threshold each time a large block is freed, so after the
//! first burst (a list page of a thousand SealedSecrets, a /metrics answer of 10,000 lines)
//! blocks of megabytes come from the heap and their pages stay resident for good. The controller
//! fixes the threshold, so that such blocks are mapped and unmapped on their own, and gives free
//! pages back once a burst of reconciles is over.
//!
//! Elsewhere than glibc (musl, other systems) both are no-ops: those allocators have no such
//! calls, and return large blocks themselves.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

/// Blocks from this size up get a mapping of their own (glibc's default before it adapts).
const MMAP_THRESHOLD: usize = 128 * 1024;

/// How often [`release_when_idle`] looks at the work done.
const IDLE_CHECK: Duration = Duration::from_secs(10);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    /// Fix the mmap threshold (which also stops glibc raising the trim threshold).
    pub fn fix_mmap_threshold(bytes: usize) -> bool {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes no pointers; glibc serialises it with every allocator call.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }

    /// Give the free pages of every arena back to the system.
    pub fn trim() -> bool {
        // SAFETY: malloc_trim takes no pointers; it only locks and walks glibc's own free lists.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn fix_mmap_threshold(_bytes: usize) -> bool {
        false
    }

    pub fn trim() -> bool {
        false
    }
}

/// Call once, before the runtime starts its threads (`run` does).
pub fn configure() {
    if !glibc::fix_mmap_threshold(MMAP_THRESHOLD) {
        tracing::debug!("the allocator's mmap threshold is not adjustable here");
    }
}

/// Give free memory back to the system after each burst of work: when `work` (a count of
/// reconciles) moved since the last release and then stood still for [`IDLE_CHECK`]. Runs until
/// the process ends; cheap when idle (one atomic read per check).
pub async fn release_when_idle(work: Counter) {
    let mut interval = tokio::time::interval(IDLE_CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut released) = (work.get(), work.get());
    loop {
        interval.tick().await;
        let now = work.get();
        if now == seen && now != released {
            released = now;
            // malloc_trim walks every arena under its lock: a blocking call, off the workers.
            let trimmed = tokio::task::spawn_blocking(glibc::trim).await.unwrap_or(false);
            tracing::debug!(trimmed, "gave free memory back after a burst of reconciles");
        }
        seen = now;
    }
}
