//! `smartpkg account create`: a console account, through a smartpkg server's admin API.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

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
}

pub async fn run(cmd: AccountCmd, r: &Resolved) -> anyhow::Result<()> {
    let AccountCmd::Create {
        name,
        role,
        apps,
        password_stdin,
    } = cmd;
    let password = if password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from standard input")?;
        Some(s.lines().next().unwrap_or("").to_string())
    } else {
        None
    };
    let url = format!("{}/admin/v1/accounts", r.base_url.trim_end_matches('/'));
    let req = reqwest::Client::new()
        .post(url)
        .bearer_auth(r.admin_token()?)
        .json(&json!({"name": name, "role": role, "password": password, "apps": apps}));
    let body = super::admin_call(req, "the account").await?;
    if r.json {
        return print_json(&body);
    }
    println!(
        "account {} ({}) created; sign in at {}/console",
        body["name"].as_str().unwrap_or(""),
        body["role"].as_str().unwrap_or(""),
        r.base_url.trim_end_matches('/')
    );
    if let Some(p) = body["password"].as_str() {
        println!("password (shown once): {p}");
    }
    Ok(())
}
