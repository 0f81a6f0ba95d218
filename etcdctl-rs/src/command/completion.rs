//! `completion bash|zsh|fish`: shell completion scripts (clap_complete).

use clap::Subcommand;
use clap_complete::Shell;

use crate::exit::CliResult;
use crate::global::Ctx;

/// Supported shells.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CompletionCmd {
    #[command(about = "Generate the autocompletion script for bash")]
    Bash,
    #[command(about = "Generate the autocompletion script for zsh")]
    Zsh,
    #[command(about = "Generate the autocompletion script for fish")]
    Fish,
}

/// Writes the script for the shell to stdout.
pub fn run(ctx: &mut Ctx, cmd: CompletionCmd) -> CliResult {
    let shell = match cmd {
        CompletionCmd::Bash => Shell::Bash,
        CompletionCmd::Zsh => Shell::Zsh,
        CompletionCmd::Fish => Shell::Fish,
    };
    let mut c = crate::cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut c, "etcdctl-rs", &mut buf);
    ctx.out.raw(&buf);
    Ok(())
}
