//! The client's rule, checked on the resolved dependency graph rather than by reading its
//! manifest: a third party's program that links it gets the wire types and an HTTP client, and
//! never the platform — no server, store or storage crate of ours, and no database driver,
//! however deep in the tree.

use std::process::Command;

/// Crates that must not be beneath the client.
const FORBIDDEN: [&str; 12] = [
    "smartpkg-server",
    "smartpkg-store",
    "smartpkg-store-postgres",
    "smartpkg-store-sqlite",
    "smartpkg-storage",
    "smartpkg-core",
    "sqlx",
    "rusqlite",
    "tokio-postgres",
    "libsqlite3-sys",
    "axum",
    "zip",
];

/// Every crate in the client's normal and build dependencies, as `cargo tree` resolves them.
fn client_tree() -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "smartpkg-client",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn no_server_store_or_database_crate_is_beneath_the_client() {
    let tree = client_tree();
    assert!(
        tree.iter().any(|c| c == "smartpkg-types") && tree.iter().any(|c| c == "reqwest"),
        "the tree was not read: {tree:?}"
    );
    let bad: Vec<&String> = tree
        .iter()
        .filter(|c| FORBIDDEN.contains(&c.as_str()))
        .collect();
    assert!(bad.is_empty(), "beneath smartpkg-client: {bad:?}");
}
