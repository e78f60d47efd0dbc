//! PLACEHOLDER: `demo` is being written; this stub only keeps the binary compiling.

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("demo is not implemented yet")
}
