//! `ferryd`: runs the appliance, or administers its database.

use anyhow::Result;
use clap::Parser as _;
use ferryd::cli::{Cli, Command};
use ferryd::config::{Config, FileConfig};

fn main() {
    if let Err(e) = real_main() {
        eprintln!("ferryd: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let file = match &cli.run.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(file, cli.run.overrides())?;
    match cli.command {
        Some(Command::Admin { command }) => ferryd::admin::run(&config, command),
        None => {
            let journal = ferryd::service::init_logging();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(ferryd::app::run(config, journal))
        }
    }
}
