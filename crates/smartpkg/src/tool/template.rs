//! `smartpkg template …`: the third party's template library (its token), and `push`, which
//! uploads a local source folder as a draft through a smartpkg server's admin API.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use smartpkg_client::types::{AddToTemplateRequest, PageRequest};
use smartpkg_server::admin::answers::ArchiveUploaded;

use super::{fail, print_json, print_table, Resolved};

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Drafts uploaded by the developer tools, newest first.
    #[command(after_help = "Example:\n  smartpkg template drafts --page 1 --page-size 20")]
    Drafts {
        #[arg(long, default_value_t = 1)]
        page: i64,
        #[arg(long, default_value_t = 10)]
        page_size: i64,
    },
    /// Turn a draft into a template (at most 50; a description of at most 30 characters).
    #[command(after_help = "Example:\n  smartpkg template add --draft-id 7 --desc 'spring menu'")]
    Add {
        #[arg(long)]
        draft_id: i64,
        #[arg(long = "desc")]
        user_desc: String,
    },
    /// The template library.
    #[command(after_help = "Example:\n  smartpkg template list --json")]
    List {
        #[arg(long, default_value_t = 1)]
        page: i64,
        #[arg(long, default_value_t = 10)]
        page_size: i64,
    },
    /// Delete a template.
    #[command(after_help = "Example:\n  smartpkg template delete --template-id 12")]
    Delete {
        #[arg(long)]
        template_id: i64,
    },
    /// Zip a local source folder (app.json at its root) and upload it as a draft of a third
    /// party, through a smartpkg server's admin API (operators and tests).
    #[command(after_help = "Example:
  smartpkg template push ./shop-template --tp-id 1 --version 2.0.0 --desc 'spring menu' \\
      --base-url http://127.0.0.1:8420 --admin-token \"$(cat smartpkg-data/admin-token)\"")]
    Push {
        dir: PathBuf,
        /// The third party whose draft it becomes [default: tp_id of the profile].
        #[arg(long)]
        tp_id: Option<i64>,
        #[arg(long = "version")]
        user_version: String,
        #[arg(long = "desc")]
        user_desc: String,
    },
}

pub async fn run(cmd: TemplateCmd, r: &Resolved) -> anyhow::Result<()> {
    if let TemplateCmd::Push {
        dir,
        tp_id,
        user_version,
        user_desc,
    } = cmd
    {
        let tp_id = tp_id
            .or(r.tp_id)
            .ok_or_else(|| anyhow!("--tp-id is needed (or tp_id in the profile)"))?;
        return push(r, &dir, tp_id, &user_version, &user_desc).await;
    }
    let c = r.client()?;
    let token = r.tp_token()?;
    match cmd {
        TemplateCmd::Drafts { page, page_size } => {
            let d = c
                .template_drafts(token, PageRequest { page, page_size })
                .await
                .map_err(fail)?;
            if r.json {
                return print_json(&d);
            }
            let rows: Vec<_> = d
                .list
                .iter()
                .map(|x| {
                    vec![
                        x.draft_id.to_string(),
                        x.user_version.clone(),
                        x.user_desc.clone(),
                        x.create_time.to_string(),
                    ]
                })
                .collect();
            print_table(
                &["DRAFT", "VERSION", "DESCRIPTION", "CREATED (unix)"],
                &rows,
            );
            println!("{} in all", d.count);
            Ok(())
        }
        TemplateCmd::Add {
            draft_id,
            user_desc,
        } => {
            let t = c
                .add_to_template(
                    token,
                    &AddToTemplateRequest {
                        draft_id,
                        user_desc,
                    },
                )
                .await
                .map_err(fail)?;
            if r.json {
                return print_json(&t);
            }
            println!("template {} added from draft {draft_id}", t.template_id);
            Ok(())
        }
        TemplateCmd::List { page, page_size } => {
            let l = c
                .template_list(token, PageRequest { page, page_size })
                .await
                .map_err(fail)?;
            if r.json {
                return print_json(&l);
            }
            let rows: Vec<_> = l
                .list
                .iter()
                .map(|x| {
                    vec![
                        x.template_id.to_string(),
                        x.user_version.clone(),
                        x.user_desc.clone(),
                        x.create_time.to_string(),
                    ]
                })
                .collect();
            print_table(
                &["TEMPLATE", "VERSION", "DESCRIPTION", "CREATED (unix)"],
                &rows,
            );
            println!("{} in all", l.count);
            Ok(())
        }
        TemplateCmd::Delete { template_id } => {
            c.delete_template(token, template_id).await.map_err(fail)?;
            if r.json {
                return print_json(&serde_json::json!({"ok": true}));
            }
            println!("template {template_id} deleted");
            Ok(())
        }
        TemplateCmd::Push { .. } => unreachable!("handled above"),
    }
}

/// Every regular file under `dir`, as (path inside the archive, path on disk), sorted so the
/// same folder always zips to the same archive.
fn files_of(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .context("a file outside the folder")?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            } else {
                // Symbolic links could point anywhere on this machine; they are not sent.
                eprintln!("skipping {} (not a regular file)", path.display());
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn zip_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let files = files_of(dir)?;
    if !files.iter().any(|(rel, _)| rel == "app.json") {
        bail!(
            "{} has no app.json at its root: it is not a template's source folder",
            dir.display()
        );
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (rel, path) in files {
        zip.start_file(rel.as_str(), opts)?;
        zip.write_all(
            &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )?;
    }
    Ok(zip.finish()?.into_inner())
}

async fn push(
    r: &Resolved,
    dir: &Path,
    tp_id: i64,
    version: &str,
    desc: &str,
) -> anyhow::Result<()> {
    let bytes = zip_dir(dir)?;
    let size = bytes.len();
    let url = format!(
        "{}/admin/v1/tps/{tp_id}/drafts",
        r.base_url.trim_end_matches('/')
    );
    let req = reqwest::Client::new()
        .post(url)
        .query(&[("user_version", version), ("user_desc", desc)])
        .bearer_auth(r.admin_token()?)
        .header("content-type", "application/zip")
        .body(bytes);
    let body: ArchiveUploaded = super::admin_call(req, "the draft").await?;
    if r.json {
        return print_json(&body);
    }
    println!(
        "draft {} ({version}, {size} bytes zipped) uploaded to third party {tp_id}; add it with: smartpkg template add --draft-id {} --desc …",
        body.draft_id, body.draft_id
    );
    Ok(())
}
