//! `ferryd admin`: direct administration of the appliance's database, for
//! first set-up, scripts and recovery. It works whether or not the daemon
//! is running (SQLite in WAL mode takes both).

use std::io::Read as _;

use anyhow::{Context, Result, anyhow, bail};
use ferry_store::{Access, ApiKeyId, Role, Store, User, UserStatus};

use crate::app::{certificate_names, open_store};
use crate::cli::{AdminCommand, ApikeyCommand, ShareCommand, UserCommand};
use crate::config::Config;
use crate::identity;

pub fn run(config: &Config, command: AdminCommand) -> Result<()> {
    if let AdminCommand::Fingerprint = command {
        std::fs::create_dir_all(&config.data)?;
        let id = identity::load_or_create(&config.data, &certificate_names(config))?;
        println!("{}", id.fingerprint());
        return Ok(());
    }
    let store = open_store(config)?;
    match command {
        AdminCommand::User { command } => user(&store, command),
        AdminCommand::Apikey { command } => apikey(&store, command),
        AdminCommand::Share { command } => share(&store, command),
        AdminCommand::Fingerprint => Ok(()),
        AdminCommand::Audit { limit, action } => {
            for e in store.list_events(limit, None, action.as_deref())? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    e.at,
                    e.user_email.as_deref().unwrap_or("-"),
                    e.address.as_deref().unwrap_or("-"),
                    e.action,
                    e.subject,
                    e.detail
                );
            }
            Ok(())
        }
    }
}

fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from stdin")?;
    let p = s.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        bail!("no password on standard input");
    }
    Ok(p)
}

fn find_user(store: &Store, email: &str) -> Result<User> {
    store
        .user_by_email(email)?
        .ok_or_else(|| anyhow!("there is no user {email}"))
}

fn user(store: &Store, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add {
            email,
            role,
            name,
            password_stdin,
        } => {
            let role: Role = role.parse()?;
            let password = password_stdin.then(read_password).transpose()?;
            let u = store.create_user(&email, &name, role, password.as_deref())?;
            eprintln!("added {} ({}, {})", u.email, u.role, u.status.as_str());
        }
        UserCommand::List => {
            for u in store.list_users()? {
                println!("{}\t{}\t{}\t{}", u.email, u.role, u.status.as_str(), u.name);
            }
        }
        UserCommand::Passwd { email } => {
            let u = find_user(store, &email)?;
            store.set_password(u.id, &read_password()?)?;
            eprintln!("password of {email} set");
        }
        UserCommand::Disable { email } => {
            store.set_status(find_user(store, &email)?.id, UserStatus::Disabled)?;
            eprintln!("{email} disabled");
        }
        UserCommand::Enable { email } => {
            store.set_status(find_user(store, &email)?.id, UserStatus::Active)?;
            eprintln!("{email} enabled");
        }
    }
    Ok(())
}

fn apikey(store: &Store, command: ApikeyCommand) -> Result<()> {
    match command {
        ApikeyCommand::Create { email, name } => {
            let u = find_user(store, &email)?;
            let key = store.create_api_key(u.id, &name)?;
            // Only the key on stdout, so scripts can capture it.
            println!("{}", key.secret);
        }
        ApikeyCommand::List { email } => {
            for k in store.list_api_keys(find_user(store, &email)?.id)? {
                println!(
                    "{}\t{}…\t{}\t{}",
                    k.id.0,
                    k.prefix,
                    k.name,
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        ApikeyCommand::Revoke { email, id } => {
            store.revoke_api_key(find_user(store, &email)?.id, ApiKeyId(id))?;
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}

fn share(store: &Store, command: ShareCommand) -> Result<()> {
    match command {
        ShareCommand::Add {
            name,
            path,
            root,
            folder,
        } => match (path, root, folder) {
            (Some(path), None, None) => {
                let path = if path.is_absolute() {
                    path
                } else {
                    std::env::current_dir()?.join(path)
                };
                let s = store.add_root_share(&name, &path)?;
                eprintln!("root share {} at {}", s.name, s.abs_path.display());
            }
            (None, Some(root), Some(folder)) => {
                let s = crate::shares::add_beneath(store, &name, &root, &folder)?;
                eprintln!("share {} at {}", s.name, s.abs_path.display());
            }
            _ => bail!(
                "give either NAME PATH (a root share) or NAME --in ROOT --folder REL (a share)"
            ),
        },
        ShareCommand::List => {
            for s in store.list_shares()? {
                println!(
                    "{}\t{}\t{}",
                    s.name,
                    s.parent_name.as_deref().unwrap_or("(root share)"),
                    s.abs_path.display()
                );
            }
        }
        ShareCommand::Grant {
            name,
            email,
            read,
            write,
        } => {
            let s = store
                .share_by_name(&name)?
                .ok_or_else(|| anyhow!("there is no share {name:?}"))?;
            let u = find_user(store, &email)?;
            store.grant(s.id, u.id, Access { read, write })?;
            eprintln!("{email} on {name}: read={read} write={write}");
        }
        ShareCommand::Remove { name } => {
            store.remove_share(&name)?;
            eprintln!("share {name} removed (its files are untouched)");
        }
    }
    Ok(())
}
