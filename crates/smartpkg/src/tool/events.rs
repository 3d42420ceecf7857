//! `smartpkg events listen`: a receiver for the platform's pushes, in either dialect. It
//! verifies the signature, decrypts, prints one JSON line per event on standard output, answers
//! `success`, and can run a command per event. Baidu's pushes are JSON and print as they are;
//! WeChat's are XML (signed in the query string) and print as a JSON object of their fields,
//! with `"dialect":"wechat"`. A push that fails the checks is refused (HTTP 400) and reported
//! on standard error; the platform will retry it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use smartpkg_push::{open, open_any_client, SignedMessage};
use tokio::io::AsyncWriteExt;

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Examples:
  smartpkg events listen --port 9000 --token tp_msg_token --aes-key abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
  smartpkg events listen --port 9000 --token T --aes-key K --client-id C \\
      --exec 'jq -r .event >> events.log'
Each event is one JSON line on standard output; --exec gets it on standard input and in
$SPKG_EVENT, with $SPKG_EVENT_NAME set to its event (or MsgType; WeChat's Event or InfoType).
WeChat-dialect pushes are opened with the same flags: give the third party's wechat_token,
wechat_encoding_aes_key and (to check the addressee) component_appid.")]
pub struct ListenArgs {
    /// Port to listen on (0: any; the chosen one is printed on standard error).
    #[arg(long)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// The message-check token the platform signs with.
    #[arg(long, env = "SPKG_MSG_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The 43-character EncodingAESKey.
    #[arg(long, env = "SPKG_AES_KEY", hide_env_values = true)]
    pub aes_key: String,
    /// Refuse pushes addressed to another client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A shell command run for each event.
    #[arg(long)]
    pub exec: Option<String>,
}

struct Receiver {
    args: ListenArgs,
    out: tokio::sync::Mutex<tokio::io::Stdout>,
}

/// A WeChat push: the XML body, signed in the query; its fields as a JSON object.
fn open_wechat(
    r: &Receiver,
    q: &std::collections::HashMap<String, String>,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    use smartpkg_push::wechat;
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let body = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let received = wechat::Received {
        body,
        timestamp: get("timestamp"),
        nonce: get("nonce"),
        msg_signature: get("msg_signature"),
    };
    let opened = match &r.args.client_id {
        Some(id) => wechat::open(&received, &r.args.aes_key, &r.args.token, id),
        None => wechat::open_any_client(&received, &r.args.aes_key, &r.args.token),
    }
    .map_err(|e| e.to_string())?;
    let fields = wechat::fields(&opened.msg).map_err(|e| e.to_string())?;
    let mut obj = serde_json::Map::new();
    obj.insert("dialect".into(), "wechat".into());
    for (k, v) in fields {
        obj.insert(k, v.into());
    }
    Ok(serde_json::Value::Object(obj))
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    query: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
    body: Bytes,
) -> impl IntoResponse {
    if body.trim_ascii_start().first() == Some(&b'<') {
        let query = query.map(|q| q.0).unwrap_or_default();
        return match open_wechat(&r, &query, &body) {
            Ok(event) => emit(&r, event).await,
            Err(e) => {
                eprintln!("refused a push: {e}");
                (StatusCode::BAD_REQUEST, "refused")
            }
        };
    }
    let msg: SignedMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("refused a push: the body is not a signed message: {e}");
            return (StatusCode::BAD_REQUEST, "bad message");
        }
    };
    let opened = match &r.args.client_id {
        Some(id) => open(&msg, &r.args.aes_key, &r.args.token, id),
        None => open_any_client(&msg, &r.args.aes_key, &r.args.token),
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            eprintln!("refused a push: {e}");
            return (StatusCode::BAD_REQUEST, "refused");
        }
    };
    let event: serde_json::Value = match serde_json::from_str(&opened.msg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("refused a push: the decrypted message is not JSON: {e}");
            return (StatusCode::BAD_REQUEST, "refused");
        }
    };
    emit(&r, event).await
}

/// Prints the event, runs the hook, and answers.
async fn emit(r: &Receiver, event: serde_json::Value) -> (StatusCode, &'static str) {
    let line = event.to_string();
    {
        let mut out = r.out.lock().await;
        let written = async {
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\n").await?;
            out.flush().await
        };
        if let Err(e) = written.await {
            // Nobody reads our output any more: tell the platform to try again later.
            eprintln!("cannot write the event: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "cannot record");
        }
    }
    if let Some(cmd) = &r.args.exec {
        let name = event["event"]
            .as_str()
            .or(event["Event"].as_str())
            .or(event["InfoType"].as_str())
            .or(event["MsgType"].as_str())
            .unwrap_or("")
            .to_string();
        if let Err(e) = run_hook(cmd, &line, &name).await {
            eprintln!("--exec for {name}: {e:#}");
        }
    }
    (StatusCode::OK, "success")
}

async fn run_hook(cmd: &str, line: &str, name: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("SPKG_EVENT", line)
        .env("SPKG_EVENT_NAME", name)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the command")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
    }
    let status = child.wait().await?;
    if !status.success() {
        anyhow::bail!("exited with {status}");
    }
    Ok(())
}

pub async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    smartpkg_push::aes_key(&args.aes_key).context("--aes-key")?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    eprintln!("listening for pushes on http://{local}/ (any path)");
    let state = Arc::new(Receiver {
        args,
        out: tokio::sync::Mutex::new(tokio::io::stdout()),
    });
    let app = Router::new().fallback(receive).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the receiver failed")
}
