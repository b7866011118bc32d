//! `gamma-run completions SHELL` and `gamma-run man`: generated from the clap definition, so they never drift
//! from the real command line.

use super::Exit;
use crate::cli::{Cli, CompletionsArgs};
use crate::error::{Error, Result};
use clap::CommandFactory;

pub fn completions(args: CompletionsArgs) -> Result<Exit> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "gamma-run", &mut script);
    crate::report::emit_bytes(&script);
    Ok(Exit::Ok)
}

pub fn man() -> Result<Exit> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(|e| Error::io("the man page", e))?;
    crate::report::emit_bytes(&page);
    Ok(Exit::Ok)
}
