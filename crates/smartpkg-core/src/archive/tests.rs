use super::*;
use zip::CompressionMethod;

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn build(f: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    f(&mut w);
    w.finish().expect("finish").into_inner()
}

fn with_app_json(extra: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    build(|w| {
        w.start_file("app.json", deflated()).expect("start");
        w.write_all(br#"{"pages":["pages/index/index"]}"#)
            .expect("write");
        extra(w);
    })
}

fn small_limits() -> Limits {
    Limits {
        max_archive_bytes: 1 << 20,
        max_entries: 50,
        max_entry_bytes: 256 << 10,
        max_total_bytes: 512 << 10,
        max_ratio: 1000,
    }
}

#[test]
fn a_valid_template_yields_its_pages_and_files() {
    let bytes = sample_template(&["pages/index/index", "pages/about/about"]).expect("zip");
    let m = inspect(&bytes, &Limits::default()).expect("valid");
    assert_eq!(m.prefix, "");
    assert_eq!(m.pages, vec!["pages/index/index", "pages/about/about"]);
    assert!(m.has_file("pages/about/about.swan"));
    assert!(m.pages_without_files().is_empty());
}

#[test]
fn a_single_top_folder_is_accepted_and_stripped() {
    let bytes = build(|w| {
        w.start_file("tpl/app.json", deflated()).expect("start");
        w.write_all(br#"{"pages":["pages/a/a"],"subPackages":[{"root":"sub/","pages":["b/b"]}]}"#)
            .expect("write");
        w.start_file("tpl/pages/a/a.swan", deflated())
            .expect("start");
    });
    let m = inspect(&bytes, &Limits::default()).expect("valid");
    assert_eq!(m.prefix, "tpl/");
    assert_eq!(m.pages, vec!["pages/a/a", "sub/b/b"]);
    assert_eq!(m.pages_without_files(), vec!["sub/b/b"]);

    let out = write_package(&bytes, &m, r#"{"extEnable":true}"#, Cursor::new(Vec::new()))
        .expect("package")
        .into_inner();
    let mut z = ZipArchive::new(Cursor::new(out)).expect("readable");
    let mut names: Vec<String> = z.file_names().map(String::from).collect();
    names.sort();
    assert_eq!(names, vec!["app.json", "ext.json", "pages/a/a.swan"]);
    let mut ext = String::new();
    z.by_name("ext.json")
        .expect("ext")
        .read_to_string(&mut ext)
        .expect("read");
    assert_eq!(ext, r#"{"extEnable":true}"#);
}

#[test]
fn unsafe_paths_are_rejected() {
    for name in [
        "/etc/passwd",
        "../evil.js",
        "pages/../../x",
        "a\\..\\b.js",
        "C:/win.ini",
        "a//b",
        "./a",
    ] {
        let bytes = with_app_json(|w| {
            w.start_file(name, deflated()).expect("start");
        });
        match inspect(&bytes, &Limits::default()) {
            Err(ArchiveError::UnsafePath { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn symlinks_are_rejected() {
    let bytes = with_app_json(|w| {
        w.add_symlink("pages/link", "/etc/passwd", SimpleFileOptions::default())
            .expect("link");
    });
    assert!(matches!(
        inspect(&bytes, &Limits::default()),
        Err(ArchiveError::Symlink { .. })
    ));
}

#[test]
fn a_zip_bomb_entry_is_stopped_by_the_bytes_actually_inflated() {
    let bytes = with_app_json(|w| {
        w.start_file("bomb.bin", deflated()).expect("start");
        w.write_all(&vec![0u8; 300 << 10]).expect("write");
    });
    assert!(
        bytes.len() < 4096,
        "the bomb compresses well: {}",
        bytes.len()
    );
    let err = inspect(&bytes, &small_limits()).expect_err("bomb");
    assert!(matches!(err, ArchiveError::EntryTooLarge { .. }), "{err:?}");
}

#[test]
fn total_expansion_and_ratio_are_bounded() {
    let bytes = with_app_json(|w| {
        for i in 0..3 {
            w.start_file(format!("f{i}.bin"), deflated())
                .expect("start");
            w.write_all(&vec![7u8; 200 << 10]).expect("write");
        }
    });
    let err = inspect(&bytes, &small_limits()).expect_err("total");
    assert!(matches!(err, ArchiveError::TotalTooLarge { .. }), "{err:?}");
    let ratio = Limits {
        max_ratio: 10,
        ..Limits::default()
    };
    let err = inspect(&bytes, &ratio).expect_err("ratio");
    assert!(matches!(err, ArchiveError::RatioTooHigh { .. }), "{err:?}");
}

#[test]
fn entry_count_and_archive_size_are_bounded() {
    let bytes = with_app_json(|w| {
        for i in 0..60 {
            w.start_file(format!("f{i}.js"), deflated()).expect("start");
        }
    });
    assert!(matches!(
        inspect(&bytes, &small_limits()),
        Err(ArchiveError::TooManyEntries { .. })
    ));
    let tight = Limits {
        max_archive_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        inspect(&bytes, &tight),
        Err(ArchiveError::TooLarge { .. })
    ));
}

#[test]
fn missing_or_broken_app_json_and_garbage_are_rejected() {
    let no_app = build(|w| {
        w.start_file("a/index.js", deflated()).expect("start");
        w.start_file("b/index.js", deflated()).expect("start");
    });
    assert_eq!(
        inspect(&no_app, &Limits::default()),
        Err(ArchiveError::NoAppJson)
    );
    let bad = build(|w| {
        w.start_file("app.json", deflated()).expect("start");
        w.write_all(br#"{"pages":"index"}"#).expect("write");
    });
    assert!(matches!(
        inspect(&bad, &Limits::default()),
        Err(ArchiveError::BadAppJson(_))
    ));
    assert!(matches!(
        inspect(b"PK\x03\x04 not really", &Limits::default()),
        Err(ArchiveError::Corrupt(_))
    ));
}

/// Replaces every occurrence of `from` with `to` (same length) in the raw archive bytes.
fn patch(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    bytes
}

#[test]
fn duplicate_entries_are_rejected() {
    // Writers refuse duplicate names, so rename one entry in the raw bytes (local header and
    // central directory alike).
    let bytes = with_app_json(|w| {
        w.start_file("pages/a.js", deflated()).expect("start");
        w.start_file("pages/b.js", deflated()).expect("start");
    });
    let bytes = patch(bytes, b"pages/b.js", b"pages/a.js");
    match inspect(&bytes, &Limits::default()) {
        Err(ArchiveError::Duplicate { name }) => assert_eq!(name, "pages/a.js"),
        other => panic!("duplicate accepted: {other:?}"),
    }
}

#[test]
fn encrypted_entries_are_rejected() {
    let bytes = with_app_json(|w| {
        w.start_file("secret.js", SimpleFileOptions::default())
            .expect("start");
        w.write_all(b"x").expect("write");
    });
    // Set general-purpose bit 0 (encrypted) in the central directory record of secret.js:
    // the flags sit 8 bytes into a central header (signature PK\x01\x02).
    let mut bytes = bytes;
    let name_at = bytes
        .windows(9)
        .rposition(|w| w == b"secret.js")
        .expect("central name");
    let header = bytes[..name_at]
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central header");
    bytes[header + 8] |= 1;
    let err = inspect(&bytes, &Limits::default()).expect_err("encrypted");
    match err {
        ArchiveError::Encrypted { name } => assert_eq!(name, "secret.js"),
        ArchiveError::Corrupt(msg) => assert!(
            msg.to_lowercase().contains("password") || msg.to_lowercase().contains("encrypt"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
}

/// Where the end-of-central-directory record starts.
fn eocd_at(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("eocd")
}

fn two_files() -> Vec<u8> {
    with_app_json(|w| {
        w.start_file("pages/a.js", deflated()).expect("start");
        w.start_file("pages/b.js", deflated()).expect("start");
    })
}

#[test]
fn per_disk_and_total_counts_that_disagree_are_refused() {
    let mut bytes = two_files();
    let at = eocd_at(&bytes);
    // Entries on this disk: 2 instead of 3, the total still 3.
    bytes[at + 8] = 2;
    match inspect(&bytes, &Limits::default()) {
        Err(ArchiveError::Corrupt(m)) => assert!(m.contains("disagree"), "{m}"),
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn a_central_record_hidden_past_the_declared_count_is_refused() {
    // Rename b.js to a.js (a duplicate), then declare one entry fewer, so a reader that trusts
    // the count never sees the duplicate while a tool that reads to the end does.
    let bytes = patch(two_files(), b"pages/b.js", b"pages/a.js");
    let mut bytes = bytes;
    let at = eocd_at(&bytes);
    bytes[at + 8] = 2;
    bytes[at + 10] = 2;
    match inspect(&bytes, &Limits::default()) {
        Err(ArchiveError::Corrupt(m)) => assert!(m.contains("size"), "{m}"),
        other => panic!("accepted: {other:?}"),
    }
}

/// Inserts a ZIP64 end record and locator before the classic end record, with `total64`
/// entries declared.
fn with_zip64_record(bytes: &[u8], total64: u64) -> Vec<u8> {
    let at = eocd_at(bytes);
    let eocd = &bytes[at..];
    let here = u16::from_le_bytes([eocd[8], eocd[9]]) as u64;
    let size = u32::from_le_bytes([eocd[12], eocd[13], eocd[14], eocd[15]]) as u64;
    let offset = u32::from_le_bytes([eocd[16], eocd[17], eocd[18], eocd[19]]) as u64;
    let mut rec = b"PK\x06\x06".to_vec();
    rec.extend_from_slice(&44u64.to_le_bytes());
    rec.extend_from_slice(&45u16.to_le_bytes());
    rec.extend_from_slice(&45u16.to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    rec.extend_from_slice(&here.max(total64).to_le_bytes());
    rec.extend_from_slice(&total64.to_le_bytes());
    rec.extend_from_slice(&size.to_le_bytes());
    rec.extend_from_slice(&offset.to_le_bytes());
    let mut locator = b"PK\x06\x07".to_vec();
    locator.extend_from_slice(&0u32.to_le_bytes());
    locator.extend_from_slice(&(at as u64).to_le_bytes());
    locator.extend_from_slice(&1u32.to_le_bytes());
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&rec);
    out.extend_from_slice(&locator);
    out.extend_from_slice(eocd);
    out
}

#[test]
fn a_zip64_record_that_contradicts_the_classic_one_is_refused() {
    let bytes = two_files();
    let consistent = with_zip64_record(&bytes, 3);
    inspect(&consistent, &Limits::default()).expect("a consistent ZIP64 record is fine");
    let contradicting = with_zip64_record(&bytes, 4);
    match inspect(&contradicting, &Limits::default()) {
        Err(ArchiveError::Corrupt(m)) => {
            assert!(m.contains("ZIP64") || m.contains("disagree"), "{m}")
        }
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn only_the_root_app_json_is_held_and_nested_ones_cost_nothing() {
    // Many highly compressible nested app.json files: once all buffered (hundreds of MB
    // from a small archive); now counted and dropped like any other file.
    let big = vec![b' '; 200_000];
    let bytes = with_app_json(|w| {
        for i in 0..40 {
            w.start_file(format!("sub{i}/app.json"), deflated())
                .expect("start");
            w.write_all(&big).expect("write");
        }
    });
    let generous = Limits {
        max_ratio: 100_000,
        ..Limits::default()
    };
    let m = inspect(&bytes, &generous).expect("valid");
    assert_eq!(m.pages, vec!["pages/index/index".to_string()]);
    // A root app.json over its own limit is refused outright.
    let huge = build(|w| {
        w.start_file("app.json", deflated()).expect("start");
        w.write_all(br#"{"pages":["p"],"pad":""#).expect("write");
        w.write_all(&vec![b'x'; (MAX_APP_JSON_BYTES + 10) as usize])
            .expect("write");
        w.write_all(br#""}"#).expect("write");
    });
    match inspect(&huge, &Limits::default()) {
        Err(ArchiveError::BadAppJson(m)) => assert!(m.contains("larger"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Replaces every occurrence of `from` with `to` (same length) in `bytes` from `start` on,
/// `count` times at most.
fn patch_n(bytes: &mut [u8], from: &[u8], to: &[u8], start: usize, count: usize) {
    assert_eq!(from.len(), to.len());
    let mut done = 0;
    let mut i = start;
    while i + from.len() <= bytes.len() && done < count {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            done += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert_eq!(done, count, "patched {done} of {count}");
}

fn named_pair(a: &str, b: &str) -> Vec<u8> {
    with_app_json(|w| {
        for n in [a, b] {
            w.start_file(n, deflated()).expect("start");
            w.write_all(n.as_bytes()).expect("write");
        }
    })
}

#[test]
fn an_entry_whose_local_header_names_another_file_is_refused() {
    let mut bytes = named_pair("pages/a.js", "pages/c.js");
    // Rename pages/a.js in its local header only (the first occurrence of the name).
    patch_n(&mut bytes, b"pages/a.js", b"pages/b.js", 0, 1);
    assert!(
        ZipArchive::new(Cursor::new(bytes.clone())).is_ok(),
        "a zip reader still opens it"
    );
    let e = inspect(&bytes, &small_limits()).expect_err("refused");
    assert!(
        matches!(&e, ArchiveError::LocalNameMismatch { name, local } if name == "pages/a.js" && local == "pages/b.js"),
        "{e}"
    );
}

#[test]
fn names_that_collide_after_case_folding_or_normalisation_are_refused() {
    for (a, b) in [
        ("App.json", "pages/x.js"),
        ("pages/Index.js", "pages/index.js"),
        // é precomposed (NFC) and as e + combining acute (NFD).
        ("pages/caf\u{e9}.js", "pages/cafe\u{301}.js"),
        ("PAGES/x.js", "pages/X.js"),
    ] {
        let bytes = named_pair(a, b);
        let e = inspect(&bytes, &small_limits()).expect_err(a);
        assert!(matches!(e, ArchiveError::Collision { .. }), "{a} {b}: {e}");
        assert!(e.to_string().contains("the same file"), "{e}");
    }
    assert!(inspect(&named_pair("pages/a.js", "pages/b.js"), &small_limits()).is_ok());
}

#[test]
fn a_name_that_is_both_a_file_and_a_folder_is_refused() {
    let implicit = named_pair("pages/x", "pages/x/y.js");
    let e = inspect(&implicit, &small_limits()).expect_err("implicit folder");
    assert!(
        matches!(&e, ArchiveError::FileAndFolder { name } if name == "pages/x"),
        "{e}"
    );
    let explicit = with_app_json(|w| {
        w.start_file("pages/x", deflated()).expect("start");
        w.add_directory("pages/x/", SimpleFileOptions::default())
            .expect("dir");
    });
    let e = inspect(&explicit, &small_limits()).expect_err("explicit folder");
    assert!(matches!(e, ArchiveError::FileAndFolder { .. }), "{e}");
    // Folder entries of their own beside their files are fine.
    let fine = with_app_json(|w| {
        w.add_directory("pages/", SimpleFileOptions::default())
            .expect("dir");
        w.start_file("pages/x.js", deflated()).expect("start");
    });
    assert!(inspect(&fine, &small_limits()).is_ok());
}

#[test]
fn data_before_the_first_entry_is_refused() {
    // Offsets written relative to the whole file, as self-extracting archives have them.
    let mut cur = Cursor::new(Vec::new());
    cur.write_all(b"#!/bin/sh\necho hidden\n").expect("prefix");
    let mut w = ZipWriter::new(cur);
    w.start_file("app.json", deflated()).expect("start");
    w.write_all(br#"{"pages":["pages/index/index"]}"#)
        .expect("write");
    let bytes = w.finish().expect("finish").into_inner();
    assert!(ZipArchive::new(Cursor::new(bytes.clone())).is_ok());
    let e = inspect(&bytes, &small_limits()).expect_err("refused");
    assert!(
        matches!(e, ArchiveError::DataBeforeFirstEntry { bytes: 22 }),
        "{e}"
    );
}

#[test]
fn a_name_that_is_not_utf8_is_refused_with_its_bytes_shown() {
    let mut bytes = named_pair("pages/ab.js", "pages/c.js");
    // GBK for 测 is B2 E2: in the local header and in the central directory.
    patch_n(&mut bytes, b"pages/ab.js", b"pages/\xB2\xE2.js", 0, 2);
    let e = inspect(&bytes, &small_limits()).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains(r"pages/\xB2\xE2.js") && text.contains("not UTF-8"),
        "{text}"
    );
}
