//! `sidecast admin ...`: what setting up the Socket.IO Admin UI needs; `hash-password` makes the
//! bcrypt hash `admin.password_hash` takes.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

/// `sidecast admin ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Print the bcrypt hash of a password read from standard input, for admin.password_hash.
    HashPassword(HashArgs),
}

/// `sidecast admin hash-password`
#[derive(Debug, Args)]
pub(crate) struct HashArgs {
    /// The bcrypt cost (4 to 31): each step doubles the work of every check; 12 takes about a
    /// quarter of a second.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    cost: u32,
}

pub(crate) fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::HashPassword(args) => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("password (the line is shown as typed; pipe it in to hide it):");
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password = line.strip_suffix('\n').unwrap_or(&line);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                bail!(
                    "the password is empty; give it on standard input, e.g. `printf '%s' \"$PASSWORD\" | sidecast admin hash-password`"
                );
            }
            let hash = bcrypt::hash(password, args.cost).context("cannot hash the password")?;
            println!("{hash}");
            Ok(())
        }
    }
}
