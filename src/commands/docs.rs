//! `gamma-run completions SHELL` and `gamma-run man`: generated from the clap definition, so they never drift
//! from the real command line.

use super::Exit;
use crate::cli::{Cli, CompletionsArgs};
use crate::error::{Error, Result};
use clap::CommandFactory;

pub fn completions(args: CompletionsArgs) -> Result<Exit> {
    clap_complete::generate(args.shell, &mut Cli::command(), "gamma-run", &mut std::io::stdout());
    Ok(Exit::Ok)
}

pub fn man() -> Result<Exit> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(|e| Error::io("stdout", e))?;
    Ok(Exit::Ok)
}
