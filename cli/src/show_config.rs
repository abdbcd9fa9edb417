//! `sidecast config`: print the effective configuration with secrets redacted, or only check it.

use std::path::Path;

use figment::Figment;
use sidecast_core::Config;
use sidecast_core::config::PolicyKind;

/// Options of `sidecast config`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Only validate: exit non-zero with the key, the file and the fix when invalid.
    #[arg(long)]
    check: bool,
}

/// Loads the configuration from `figment` (read from `file`, when given) and prints it, or
/// confirms that it is valid (with `--check`: its auth policies build, their key files are read
/// and a JWKS is fetched).
pub(crate) async fn run(
    args: &ConfigArgs,
    figment: &Figment,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let config = Config::from_figment(figment)?;
    if args.check {
        // Builds the auth policies, which reads their key files; fetches a JWKS once.
        if let Err(e) = sidecast_web::policy_from_config(&config) {
            anyhow::bail!("{e}");
        }
        if config.auth.policy.kinds().contains(&PolicyKind::Jwt) {
            sidecast_web::auth::JwtAuth::from_config(&config.auth.jwt)?
                .check()
                .await?;
        }
        let source = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "defaults, sidecast.toml and SIDECAST_* variables".into());
        println!("configuration is valid ({source})");
    } else {
        // Show the URL in effect even when it comes from the broker kind's default.
        let mut shown = config.redacted();
        shown.broker.url = Some(config.redacted_broker_url());
        print!("{}", shown.to_toml());
    }
    Ok(())
}
