//! `smartpkg account create|disable|enable|password`: console accounts, through a smartpkg
//! server's admin API.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use smartpkg_server::admin::answers::{AccountAnswer, AccountList, CreatedAccount};

use super::{print_json, Resolved};

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Create a console account (docs/console.md). Without --password-stdin a password is
    /// generated and printed once.
    #[command(after_help = "Examples:
  smartpkg account create olga --role operator --base-url http://127.0.0.1:8420 --admin-token \"$(cat smartpkg-data/admin-token)\"
  echo 'a long passphrase' | smartpkg account create rita --role reviewer --password-stdin
  smartpkg account create oscar --role owner --apps 12,13")]
    Create {
        name: String,
        /// operator, reviewer or owner.
        #[arg(long)]
        role: String,
        /// For owners: the mini programs they own, comma-separated ids.
        #[arg(long, value_delimiter = ',')]
        apps: Vec<i64>,
        /// Read the password from standard input (its first line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it can no longer sign in, and its sessions end at once.
    Disable { name: String },
    /// Enable a disabled account again.
    Enable { name: String },
    /// Give an account a new password (generated and printed once unless --password-stdin);
    /// its sessions end.
    #[command(after_help = "Examples:
  smartpkg account password rita
  echo 'a long passphrase' | smartpkg account password rita --password-stdin")]
    Password {
        name: String,
        /// Read the password from standard input (its first line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// The first line of standard input.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the password from standard input")?;
    Ok(s.lines().next().unwrap_or("").to_string())
}

pub async fn run(cmd: AccountCmd, r: &Resolved) -> anyhow::Result<()> {
    let (name, change, done) = match cmd {
        AccountCmd::Create {
            name,
            role,
            apps,
            password_stdin,
        } => return create(r, name, role, apps, password_stdin).await,
        AccountCmd::Disable { name } => (
            name,
            json!({"disabled": true}),
            "disabled; its sessions have ended",
        ),
        AccountCmd::Enable { name } => (name, json!({"disabled": false}), "enabled"),
        AccountCmd::Password {
            name,
            password_stdin: true,
        } => (
            name,
            json!({"password": password_from_stdin()?}),
            "has the new password; its sessions have ended",
        ),
        AccountCmd::Password { name, .. } => (
            name,
            json!({"generate_password": true}),
            "has a new password; its sessions have ended",
        ),
    };
    let base = r.base_url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let found: AccountList = super::admin_call(
        http.get(format!("{base}/admin/v1/accounts"))
            .query(&[("name", &name)])
            .bearer_auth(r.admin_token()?),
        "the account lookup",
    )
    .await?;
    let Some(id) = found.accounts.first().map(|a| a.account_id) else {
        anyhow::bail!("there is no account named {name:?}");
    };
    let body: AccountAnswer = super::admin_call(
        http.patch(format!("{base}/admin/v1/accounts/{id}"))
            .bearer_auth(r.admin_token()?)
            .json(&change),
        "the change",
    )
    .await?;
    if r.json {
        return print_json(&body);
    }
    println!("account {} {done}", body.name);
    if let Some(p) = &body.password {
        println!("password (shown once): {p}");
    }
    Ok(())
}

async fn create(
    r: &Resolved,
    name: String,
    role: String,
    apps: Vec<i64>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let password = if password_stdin {
        Some(password_from_stdin()?)
    } else {
        None
    };
    let url = format!("{}/admin/v1/accounts", r.base_url.trim_end_matches('/'));
    let req = reqwest::Client::new()
        .post(url)
        .bearer_auth(r.admin_token()?)
        .json(&json!({"name": name, "role": role, "password": password, "apps": apps}));
    let body: CreatedAccount = super::admin_call(req, "the account").await?;
    if r.json {
        return print_json(&body);
    }
    println!(
        "account {} ({}) created; sign in at {}/console",
        body.name,
        body.role,
        r.base_url.trim_end_matches('/')
    );
    if let Some(p) = &body.password {
        println!("password (shown once): {p}");
    }
    Ok(())
}
