//! Failure injection for this crate's own tests (feature `failpoints`,
//! which only its dev-dependency on itself enables): a named point on a
//! write path fails its request, or aborts the whole process, when a test
//! arms it. Without the feature the points are empty functions, so release
//! builds carry none of this.
//!
//! Points:
//! - `cpo-unit-before-evidence`: a CPO unit's write is made and its
//!   evidence not yet archived (`crate::cpo`).
//! - `stp-unit-before-leaf`: an STP log unit's record is written and its
//!   outcome leaf not yet appended (`crate::commit_log`).

use agora_core::Error;

/// What an armed point does when it is hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The request fails with [`Error::Storage`] (its savepoint is rolled
    /// back, as for any failing request).
    Fail,
    /// The process aborts on the spot, as a crash or `kill -9` would stop
    /// it: the transaction in progress never commits.
    Abort,
}

#[cfg(feature = "failpoints")]
mod imp {
    use super::Action;
    use std::sync::Mutex;

    static ARMED: Mutex<Vec<(&'static str, Action)>> = Mutex::new(Vec::new());

    pub fn arm(name: &'static str, action: Action) {
        let mut a = ARMED.lock().unwrap_or_else(|p| p.into_inner());
        a.retain(|(n, _)| *n != name);
        a.push((name, action));
    }

    pub fn disarm_all() {
        ARMED.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn armed(name: &str) -> Option<Action> {
        ARMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }
}

/// Arms point `name` with `action` until [`disarm_all_for_testing_only`].
#[cfg(feature = "failpoints")]
pub fn arm_for_testing_only(name: &'static str, action: Action) {
    imp::arm(name, action);
}

/// Disarms every point.
#[cfg(feature = "failpoints")]
pub fn disarm_all_for_testing_only() {
    imp::disarm_all();
}

/// Point `name` on a write path: `Err` if it is armed to fail; never
/// returns if it is armed to abort.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) -> Result<(), Error> {
    match imp::armed(name) {
        None => Ok(()),
        Some(Action::Fail) => Err(Error::Storage(format!("failpoint {name}"))),
        Some(Action::Abort) => std::process::abort(),
    }
}

/// Point `name` on a write path (no failpoints in this build).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) -> Result<(), Error> {
    Ok(())
}
