//! The `raftcd-bench` binary.

fn main() {
    let cli = match raftcd_bench::cli::parse_from(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            // clap's own errors (and --help/--version) print themselves.
            if let Some(ce) = e.downcast_ref::<clap::Error>() {
                ce.exit();
            }
            eprintln!("raftcd-bench: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = raftcd_bench::run(cli) {
        eprintln!("raftcd-bench: {e:#}");
        std::process::exit(1);
    }
}
