//! `smartpkg`: the platform server (`serve`) and the third party's toolkit — the package,
//! template and authorization calls, a push receiver, and fleet rollouts. The toolkit works
//! against the real Baidu host (the default) or a smartpkg server alike.

mod rollout;
mod tool;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use smartpkg_server::{demo, Settings};

// Request handling allocates many small strings; mimalloc serves them markedly faster than
// the system allocator (the get benchmark spent about a seventh of its time in malloc/free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "smartpkg",
    version,
    about = "A Baidu-compatible mini-program package platform, and a third party's toolkit for it",
    after_help = "Credentials come from flags, SPKG_* environment variables, or a profile of
~/.config/smartpkg/profiles.toml ([profiles.NAME] with base_url, access_token, tp_token,
admin_token, tp_id); --profile NAME picks one, [profiles.default] is used otherwise.

Examples:
  smartpkg serve --demo
  smartpkg pkg list --base-url http://127.0.0.1:8420 --access-token 45.…
  smartpkg rollout plan.toml --dry-run"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    globals: tool::Globals,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the platform server.
    #[command(after_help = "Examples:
  smartpkg serve --demo
  smartpkg serve --listen 0.0.0.0:8420 --database-url postgres://smartpkg@db/smartpkg")]
    Serve(ServeArgs),
    /// A mini program's packages: upload, list, detail, submit, release, rollback, withdraw…
    #[command(subcommand)]
    Pkg(tool::pkg::PkgCmd),
    /// The third party's template library, and pushing a source folder as a draft.
    #[command(subcommand)]
    Template(tool::template::TemplateCmd),
    /// Tokens: the third party's, and a mini program's pair.
    #[command(subcommand)]
    Auth(tool::auth::AuthCmd),
    /// Console accounts on a smartpkg server (admin token).
    #[command(subcommand)]
    Account(tool::account::AccountCmd),
    /// Receive the platform's pushes.
    #[command(subcommand)]
    Events(EventsCmd),
    /// Roll one template version out to many mini programs (see docs/rollout.md).
    Rollout(rollout::RolloutArgs),
    /// Devices: play a fleet against a smartpkg server's runtime channel.
    #[command(subcommand)]
    Device(tool::device::DeviceCmd),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  smartpkg completions bash > /etc/bash_completion.d/smartpkg"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Listen for pushes: verify, decrypt, print one JSON line per event, answer `success`.
    Listen(tool::events::ListenArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0: chosen by the system). [default: 127.0.0.1:8420]
    #[arg(long)]
    listen: Option<String>,
    /// Where the database, blobs and admin token live. [default: ./smartpkg-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL; unset = embedded SQLite under the data directory.
    #[arg(long)]
    database_url: Option<String>,
    /// A TOML file of settings (keys as in docs/configuration.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Seed a demo third party, mini program, template and token, and print curl lines.
    #[arg(long)]
    demo: bool,
}

fn init_logging(format: &str, directives: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: in a file they are escape sequences for someone else's.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut flags = vec![];
    if let Some(v) = args.listen {
        flags.push(("listen".to_string(), v));
    }
    if let Some(v) = args.data_dir {
        flags.push(("data_dir".to_string(), v.display().to_string()));
    }
    if let Some(v) = args.database_url {
        flags.push(("database_url".to_string(), v));
    }
    if let Some(v) = args.tls_cert {
        flags.push(("tls_cert".to_string(), v.display().to_string()));
    }
    if let Some(v) = args.tls_key {
        flags.push(("tls_key".to_string(), v.display().to_string()));
    }
    let settings = Settings::load(args.config.as_deref(), std::env::vars(), flags)
        .context("invalid settings")?;
    init_logging(&settings.log_format, &settings.log);
    let running = smartpkg_server::start(settings.clone())
        .await
        .context("cannot start the server")?;
    let base = format!("{}://{}", running.scheme, running.addr);
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {base}")?;
    if running.admin_token_generated {
        writeln!(
            out,
            "admin token (generated now, stored in {}): {}",
            settings.data_dir.join("admin-token").display(),
            running.state.admin_token
        )?;
    }
    if args.demo {
        let d = demo::seed(&running.state).await?;
        let lines = demo::curl_lines(
            &d,
            &base,
            &running.state.admin_token,
            settings.build_delay_ms,
            settings.rollback_delay_ms,
        );
        writeln!(
            out,
            "console: {base}/console (sign in as {} with password {})",
            demo::DEMO_OPERATOR,
            d.console_password
        )?;
        writeln!(out, "\n{lines}")?;
    }
    out.flush()?;
    drop(out);
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    running.wait().await.context("server failed")?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn toolkit(cmd: Cmd, globals: tool::Globals) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cmd {
        Cmd::Serve(_) => unreachable!("serve is dispatched before"),
        Cmd::Pkg(c) => tool::pkg::run(c, &globals.resolve()?).await,
        Cmd::Template(c) => tool::template::run(c, &globals.resolve()?)
            .await
            .map(|_| ok),
        Cmd::Auth(c) => tool::auth::run(c, &globals.resolve()?).await.map(|_| ok),
        Cmd::Account(c) => tool::account::run(c, &globals.resolve()?).await.map(|_| ok),
        Cmd::Events(EventsCmd::Listen(a)) => tool::events::listen(a).await.map(|_| ok),
        Cmd::Rollout(a) => rollout::run(a, &globals).await,
        Cmd::Device(c) => tool::device::run(c, &globals.resolve()?.base_url)
            .await
            .map(|_| ok),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Generated into memory: clap_complete panics on a failed write, and a closed
            // standard output (`| head`) must end the command quietly (see main).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "smartpkg", &mut script);
            let mut out = std::io::stdout().lock();
            out.write_all(&script)?;
            out.flush()?;
            Ok(ok)
        }
    }
}

/// The status of a process that wrote to a closed pipe, as a shell reports one killed by
/// SIGPIPE (128 + 13): `smartpkg … | head` ends quietly with it.
const EXIT_BROKEN_PIPE: u8 = 141;

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Rust ignores SIGPIPE, so a write to a closed standard output fails instead of ending the
/// process, and `println!` turns that failure into a panic with a backtrace. The toolkit
/// ends quietly instead, with the status a shell expects of a reader that went away. (The
/// signal itself is left ignored: the toolkit's own HTTP listeners must survive a client
/// that hangs up.)
fn end_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("BrokenPipe") {
            std::process::exit(EXIT_BROKEN_PIPE.into());
        }
        default(info);
    }));
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(args) => serve(args).await.map(|_| std::process::ExitCode::SUCCESS),
        other => {
            // The toolkit logs only when asked (SPKG_LOG=debug): its output is for people
            // and scripts.
            if let Ok(directives) = std::env::var("SPKG_LOG") {
                init_logging("text", &directives);
            }
            end_quietly_on_broken_pipe();
            toolkit(other, cli.globals).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            // One line: the cause chain joined, as a person reads it.
            eprintln!("smartpkg: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
