//! Named crash points at durability boundaries, compiled in only with the `failpoints` feature.
//! `RAFTCD_FAILPOINTS=name1,name2` makes the member abort (like kill -9) when it reaches one of them, so
//! fault tests can crash it exactly between "saved" and "applied".

/// Aborts the process if `name` is armed in `RAFTCD_FAILPOINTS`.
pub fn hit(name: &str) {
    if let Ok(armed) = std::env::var("RAFTCD_FAILPOINTS") {
        if armed.split(',').any(|n| n.trim() == name) {
            eprintln!("raftcd: failpoint {name} reached, aborting");
            std::process::abort();
        }
    }
}

/// Marks a failpoint; a no-op unless built with `--features failpoints`.
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit($name);
    };
}
