//! `smartpkg auth …`: the third party's token from a ticket, and a mini program's token pair
//! from an authorization code or a refresh token.

use clap::Subcommand;
use smartpkg_client::types::{AppTokens, TpTokenRequest};

use super::{fail, print_json, print_table, Resolved};

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// The third party's access token, from its client id and the latest pushed ticket.
    #[command(
        after_help = "Example:\n  smartpkg auth tp-token --client-id dMzkGPRd… --ticket 'ticket from the last push'"
    )]
    TpToken {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        ticket: String,
    },
    /// A mini program's token pair, for an authorization code (third party's token).
    #[command(
        after_help = "Example:\n  smartpkg auth exchange --code 'code from the AUTHORIZED push' --tp-token 42.…"
    )]
    Exchange {
        #[arg(long)]
        code: String,
    },
    /// A new token pair for a refresh token. The old refresh token stops working: keep the
    /// new pair this prints.
    #[command(
        after_help = "Example:\n  smartpkg auth refresh --refresh-token 46.… --tp-token 42.… --json > pair.json"
    )]
    Refresh {
        #[arg(long)]
        refresh_token: String,
    },
}

fn show_pair(r: &Resolved, p: &AppTokens) -> anyhow::Result<()> {
    if r.json {
        return print_json(p);
    }
    print_table(
        &["ACCESS TOKEN", "REFRESH TOKEN", "EXPIRES IN (s)"],
        &[vec![
            p.access_token.clone(),
            p.refresh_token.clone(),
            p.expires_in.to_string(),
        ]],
    );
    Ok(())
}

pub async fn run(cmd: AuthCmd, r: &Resolved) -> anyhow::Result<()> {
    let c = r.client()?;
    match cmd {
        AuthCmd::TpToken { client_id, ticket } => {
            let t = c
                .tp_token(&TpTokenRequest { client_id, ticket })
                .await
                .map_err(fail)?;
            if r.json {
                return print_json(&t);
            }
            print_table(
                &["TP ACCESS TOKEN", "EXPIRES IN (s)", "SCOPE"],
                &[vec![t.access_token, t.expires_in.to_string(), t.scope]],
            );
            Ok(())
        }
        AuthCmd::Exchange { code } => {
            let p = c.exchange_code(r.tp_token()?, &code).await.map_err(fail)?;
            show_pair(r, &p)
        }
        AuthCmd::Refresh { refresh_token } => {
            let p = c
                .refresh_app_token(r.tp_token()?, &refresh_token)
                .await
                .map_err(fail)?;
            show_pair(r, &p)
        }
    }
}
