//! What the server leaves on disk, started as a careless service unit might start it (umask
//! 000): every folder of its data directory owner-only, every file readable by its owner only.

mod common;

#[cfg(unix)]
#[test]
fn under_umask_000_every_file_and_folder_of_the_data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    // The demo uploads a template and builds packages: blobs, their folders and the database.
    let server = common::start_demo_after(&data, &[], "umask 000");
    let mut seen = (0, 0);
    let mut stack = vec![data.clone()];
    let mut blobs = 0;
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        seen.0 += 1;
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
                continue;
            }
            let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
            seen.1 += 1;
            if path.components().any(|c| c.as_os_str() == "blobs") {
                blobs += 1;
            }
        }
    }
    assert!(blobs >= 1, "no blob was written: {seen:?}");
    server.stop();
}
