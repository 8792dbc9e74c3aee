//! Termination signals while plaintext (or a half-written file) is on disk: SIGINT, SIGTERM,
//! SIGHUP and SIGQUIT are held until it is wiped, then end the process as they would have.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

const HELD_SIGNALS: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

#[derive(Debug)]
struct State {
    /// True when nothing is held: a signal then acts at once, as if we had no handler.
    act_now: Arc<AtomicBool>,
    /// The last signal that arrived while held (0: none).
    pending: Arc<AtomicUsize>,
    holders: AtomicUsize,
}

static STATE: OnceLock<Option<State>> = OnceLock::new();

fn state() -> Option<&'static State> {
    STATE
        .get_or_init(|| {
            let act_now = Arc::new(AtomicBool::new(true));
            let pending = Arc::new(AtomicUsize::new(0));
            for signal in HELD_SIGNALS {
                // Recorded first, then acted on when nothing is held (signal-hook runs the
                // actions of one signal in the order they were registered).
                signal_hook::flag::register_usize(signal, pending.clone(), signal as usize).ok()?;
                signal_hook::flag::register_conditional_default(signal, act_now.clone()).ok()?;
            }
            Some(State { act_now, pending, holders: AtomicUsize::new(0) })
        })
        .as_ref()
}

/// While a `Held` lives, the signals above are recorded instead of acted on; when the last one
/// is dropped, a recorded signal ends the process. Declare it before the plaintext it guards,
/// so that it is dropped after it.
#[derive(Debug)]
#[must_use]
pub struct Held(());

pub fn hold() -> Held {
    if let Some(state) = state() {
        state.holders.fetch_add(1, Ordering::SeqCst);
        state.act_now.store(false, Ordering::SeqCst);
    }
    Held(())
}

/// Whether a signal arrived while held: the user wants to stop.
pub fn pending() -> bool {
    state().is_some_and(|s| s.pending.load(Ordering::SeqCst) != 0)
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(state) = state() else { return };
        if state.holders.fetch_sub(1, Ordering::SeqCst) == 1 {
            state.act_now.store(true, Ordering::SeqCst);
            let signal = state.pending.swap(0, Ordering::SeqCst);
            if signal != 0 {
                let _ = signal_hook::low_level::emulate_default_handler(signal as i32);
            }
        }
    }
}
