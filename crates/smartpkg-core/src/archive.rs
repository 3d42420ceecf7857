//! Template archives: hostile-input checks, the manifest a build needs, and the full package
//! archive (the template's entries copied unchanged plus the generated `ext.json`).
//!
//! Sizes are counted on the bytes actually inflated, never on what an entry's header claims,
//! so a zip bomb is stopped after at most `max_entry_bytes + 1` bytes of work per entry.

use std::collections::BTreeSet;
use std::io::{self, Cursor, Read, Seek, Write};

use serde_json::Value;
use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{ZipArchive, ZipWriter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_archive_bytes: u64,
    pub max_entries: usize,
    pub max_entry_bytes: u64,
    pub max_total_bytes: u64,
    /// Expanded bytes per archive byte, for the whole archive.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 64 << 20,
            max_entries: 10_000,
            max_entry_bytes: 32 << 20,
            max_total_bytes: 256 << 20,
            max_ratio: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: u64, limit: u64 },
    #[error("the archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("entry \"{name}\" expands past {limit} bytes")]
    EntryTooLarge { name: String, limit: u64 },
    #[error("the entries expand past {limit} bytes in all")]
    TotalTooLarge { limit: u64 },
    #[error("the archive expands {ratio} times its size; at most {limit} is accepted")]
    RatioTooHigh { ratio: u64, limit: u64 },
    #[error("entry \"{name}\" has an unsafe path: {why}")]
    UnsafePath { name: String, why: &'static str },
    #[error("entry \"{name}\" is a symbolic link; links are not accepted")]
    Symlink { name: String },
    #[error("entry \"{name}\" is encrypted; encrypted entries are not accepted")]
    Encrypted { name: String },
    #[error("entry \"{name}\" appears twice")]
    Duplicate { name: String },
    #[error("entries \"{name}\" and \"{other}\" name the same file on a case-insensitive or Unicode-normalising file system")]
    Collision { name: String, other: String },
    #[error("\"{name}\" is both a file and a folder")]
    FileAndFolder { name: String },
    #[error("entry \"{name}\" is named \"{local}\" in its own header: the archive means different files to different tools")]
    LocalNameMismatch { name: String, local: String },
    #[error("the archive has {bytes} bytes of other data before its first entry")]
    DataBeforeFirstEntry { bytes: u64 },
    #[error("entry name \"{shown}\" is not UTF-8 (perhaps GBK, from a zip tool of an older Windows); create the archive with UTF-8 names")]
    NotUtf8 { shown: String },
    #[error("app.json not found at the archive's root (or under a single top folder)")]
    NoAppJson,
    #[error("app.json is invalid: {0}")]
    BadAppJson(String),
    #[error("not a readable zip archive: {0}")]
    Corrupt(String),
}

impl From<ZipError> for ArchiveError {
    fn from(e: ZipError) -> Self {
        ArchiveError::Corrupt(e.to_string())
    }
}

/// What a build and the automatic audit need to know about a template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateManifest {
    /// "" or "top/": the single folder that holds everything, stripped from `files`.
    pub prefix: String,
    /// Every file's path below the prefix.
    pub files: Vec<String>,
    /// The pages `app.json` declares, subpackage pages included with their root.
    pub pages: Vec<String>,
}

impl TemplateManifest {
    pub fn has_page(&self, page: &str) -> bool {
        let page = page.trim_start_matches('/');
        self.pages.iter().any(|p| p == page)
    }

    pub fn has_file(&self, path: &str) -> bool {
        self.files
            .binary_search_by(|f| f.as_str().cmp(path))
            .is_ok()
    }

    /// Pages whose `.swan` view is missing from the archive.
    pub fn pages_without_files(&self) -> Vec<&str> {
        self.pages
            .iter()
            .filter(|p| !self.has_file(&format!("{p}.swan")))
            .map(String::as_str)
            .collect()
    }
}

fn check_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.contains('\\') {
        return Err("backslash in path");
    }
    if name.starts_with('/') {
        return Err("absolute path");
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("control character in path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err("drive letter");
    }
    for part in name.trim_end_matches('/').split('/') {
        match part {
            ".." => return Err("parent directory (..)"),
            "." | "" => return Err("empty or '.' path component"),
            _ => {}
        }
    }
    Ok(())
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

/// Counts bytes written, failing once past `limit` so a bomb costs at most `limit + 1` bytes.
struct Counter {
    n: u64,
    limit: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.n += buf.len() as u64;
        if self.n > self.limit {
            return Err(io::Error::other("limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn parse_pages(app_json: &[u8]) -> Result<Vec<String>, ArchiveError> {
    let v: Value =
        serde_json::from_slice(app_json).map_err(|e| ArchiveError::BadAppJson(e.to_string()))?;
    let strings = |v: Option<&Value>, what: &str| -> Result<Vec<String>, ArchiveError> {
        let list = v
            .and_then(Value::as_array)
            .ok_or_else(|| ArchiveError::BadAppJson(format!("{what} must be an array")))?;
        list.iter()
            .map(|p| {
                p.as_str()
                    .map(|s| s.trim_start_matches('/').to_string())
                    .ok_or_else(|| ArchiveError::BadAppJson(format!("{what} holds a non-string")))
            })
            .collect()
    };
    let mut pages = strings(v.get("pages"), "pages")?;
    if pages.is_empty() {
        return Err(ArchiveError::BadAppJson("pages is empty".into()));
    }
    let subs = v.get("subPackages").or_else(|| v.get("subpackages"));
    for sub in subs.and_then(Value::as_array).into_iter().flatten() {
        let root = sub
            .get("root")
            .and_then(Value::as_str)
            .ok_or_else(|| ArchiveError::BadAppJson("a subPackage has no root".into()))?;
        let root = root.trim_matches('/');
        for p in strings(sub.get("pages"), "subPackages[].pages")? {
            pages.push(format!("{root}/{p}"));
        }
    }
    Ok(pages)
}

fn le16(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 2)
        .map(|f| u16::from_le_bytes([f[0], f[1]]) as u64)
}

fn le32(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 4)
        .map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as u64)
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    let f: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(f))
}

fn corrupt(why: impl Into<String>) -> ArchiveError {
    ArchiveError::Corrupt(why.into())
}

/// An entry as the central directory lists it: its name's bytes and where its local header is.
struct CentralRecord {
    name: Vec<u8>,
    local_offset: u64,
}

/// The entries of the archive's central directory, read by walking it record by record from
/// the end-of-central-directory record (and its ZIP64 form), refusing every archive whose
/// bookkeeping disagrees with itself: a second disk, per-disk and total counts that differ,
/// a ZIP64 record that contradicts the classic one, or fewer records than declared. Zip
/// readers resolve such disagreements differently (one trusts one count, one another), which
/// is how a duplicate entry slips past a reader that indexes by name.
fn central_directory(bytes: &[u8], max_entries: usize) -> Result<Vec<CentralRecord>, ArchiveError> {
    const EOCD: &[u8] = b"PK\x05\x06";
    const LOCATOR: &[u8] = b"PK\x06\x07";
    const EOCD64: &[u8] = b"PK\x06\x06";
    const CENTRAL: &[u8] = b"PK\x01\x02";
    // The record is 22 bytes plus its comment, which must reach exactly to the end.
    let from = bytes.len().saturating_sub(22 + 65_535);
    let at = (from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| {
            bytes[i..].starts_with(EOCD)
                && le16(bytes, i + 20).is_some_and(|c| i + 22 + c as usize == bytes.len())
        })
        .ok_or_else(|| corrupt("no end-of-central-directory record"))?;
    let field = |off: usize| le16(bytes, at + off).ok_or_else(|| corrupt("truncated record"));
    let (disk, cd_disk, here, total) = (field(4)?, field(6)?, field(8)?, field(10)?);
    let cd_size = le32(bytes, at + 12).ok_or_else(|| corrupt("truncated record"))?;
    let cd_offset = le32(bytes, at + 16).ok_or_else(|| corrupt("truncated record"))?;
    let (mut entries, mut offset, mut size) = (total, cd_offset, cd_size);
    let zip64 = at >= 20 && bytes[at - 20..].starts_with(LOCATOR);
    if zip64 {
        let rec = le64(bytes, at - 20 + 8).ok_or_else(|| corrupt("truncated ZIP64 locator"))?;
        let rec = usize::try_from(rec).map_err(|_| corrupt("ZIP64 record out of range"))?;
        if !bytes.get(rec..).is_some_and(|b| b.starts_with(EOCD64)) {
            return Err(corrupt("the ZIP64 locator points at no ZIP64 record"));
        }
        let f64 =
            |off: usize| le64(bytes, rec + off).ok_or_else(|| corrupt("truncated ZIP64 record"));
        let f32 =
            |off: usize| le32(bytes, rec + off).ok_or_else(|| corrupt("truncated ZIP64 record"));
        let (disk64, cd_disk64) = (f32(16)?, f32(20)?);
        let (here64, total64, size64, offset64) = (f64(24)?, f64(32)?, f64(40)?, f64(48)?);
        if disk64 != 0 || cd_disk64 != 0 || here64 != total64 {
            return Err(corrupt(
                "the ZIP64 record's disk fields or entry counts disagree",
            ));
        }
        // The classic fields must either agree or say "see ZIP64".
        let agrees =
            |classic: u64, wide: u64, saturated: u64| classic == wide || classic == saturated;
        if !agrees(total, total64, 0xFFFF)
            || !agrees(here, here64, 0xFFFF)
            || !agrees(cd_offset, offset64, 0xFFFF_FFFF)
            || !agrees(cd_size, size64, 0xFFFF_FFFF)
        {
            return Err(corrupt(
                "the ZIP64 record contradicts the end-of-central-directory record",
            ));
        }
        entries = total64;
        offset = offset64;
        size = size64;
    }
    if disk != 0 || cd_disk != 0 || (!zip64 && here != total) {
        return Err(corrupt(
            "multi-disk archive, or per-disk and total entry counts disagree",
        ));
    }
    if entries > max_entries as u64 {
        return Err(ArchiveError::TooManyEntries { limit: max_entries });
    }
    let mut names = Vec::with_capacity(entries as usize);
    let mut pos = usize::try_from(offset).map_err(|_| corrupt("central directory out of range"))?;
    for _ in 0..entries {
        if !bytes.get(pos..).is_some_and(|b| b.starts_with(CENTRAL)) {
            return Err(corrupt(
                "the central directory holds fewer records than declared",
            ));
        }
        let len = |off: usize| -> Result<usize, ArchiveError> {
            Ok(le16(bytes, pos + off).ok_or_else(|| corrupt("truncated central record"))? as usize)
        };
        let (name_len, extra_len, comment_len) = (len(28)?, len(30)?, len(32)?);
        let name = bytes
            .get(pos + 46..pos + 46 + name_len)
            .ok_or_else(|| corrupt("truncated central record"))?;
        let extra = bytes
            .get(pos + 46 + name_len..pos + 46 + name_len + extra_len)
            .ok_or_else(|| corrupt("truncated central record"))?;
        let mut local_offset =
            le32(bytes, pos + 42).ok_or_else(|| corrupt("truncated central record"))?;
        if local_offset == 0xFFFF_FFFF {
            // The ZIP64 extra field holds the 64-bit values of the saturated fields, in order:
            // uncompressed size, compressed size, local header offset.
            let skip = [24usize, 20]
                .iter()
                .filter(|&&off| le32(bytes, pos + off) == Some(0xFFFF_FFFF))
                .count();
            local_offset = zip64_field(extra, skip)
                .ok_or_else(|| corrupt("a ZIP64 entry without its local header offset"))?;
        }
        names.push(CentralRecord {
            name: name.to_vec(),
            local_offset,
        });
        pos += 46 + name_len + extra_len + comment_len;
    }
    // Records beyond the declared count would be seen by tools that read to the end.
    if (pos as u64).checked_sub(offset) != Some(size) {
        return Err(corrupt(
            "the central directory's size does not match the records it declares",
        ));
    }
    Ok(names)
}

/// The `index`th 8-byte value of the ZIP64 extended information extra field (id 1).
fn zip64_field(extra: &[u8], index: usize) -> Option<u64> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = le16(extra, at)?;
        let len = le16(extra, at + 2)? as usize;
        if id == 1 {
            return le64(extra, at + 4 + 8 * index).filter(|_| 8 * (index + 1) <= len);
        }
        at += 4 + len;
    }
    None
}

/// A name's bytes shown as text: UTF-8 where it is, `\xNN` for every other byte.
fn show_bytes(raw: &[u8]) -> String {
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// The entries' names, each checked against its local header, with nothing before the first
/// entry: tools that read local headers (streaming unzip) and tools that read the central
/// directory must see the same files.
fn checked_names(bytes: &[u8], records: &[CentralRecord]) -> Result<Vec<String>, ArchiveError> {
    const LOCAL: &[u8] = b"PK\x03\x04";
    if let Some(first) = records.iter().map(|r| r.local_offset).min() {
        if first != 0 {
            return Err(ArchiveError::DataBeforeFirstEntry { bytes: first });
        }
    }
    let mut names = Vec::with_capacity(records.len());
    for r in records {
        let name = String::from_utf8(r.name.clone()).map_err(|_| ArchiveError::NotUtf8 {
            shown: show_bytes(&r.name),
        })?;
        let at = usize::try_from(r.local_offset)
            .map_err(|_| corrupt(format!("entry \"{name}\": local header out of range")))?;
        if !bytes.get(at..).is_some_and(|b| b.starts_with(LOCAL)) {
            return Err(corrupt(format!("entry \"{name}\" has no local header")));
        }
        let name_len = le16(bytes, at + 26)
            .ok_or_else(|| corrupt(format!("entry \"{name}\": truncated local header")))?
            as usize;
        let local = bytes
            .get(at + 30..at + 30 + name_len)
            .ok_or_else(|| corrupt(format!("entry \"{name}\": truncated local header")))?;
        if local != r.name.as_slice() {
            return Err(ArchiveError::LocalNameMismatch {
                name,
                local: show_bytes(local),
            });
        }
        names.push(name);
    }
    Ok(names)
}

/// Refuses names that one file system would take for one file: equal after Unicode
/// normalisation (NFC) and case folding (`App.json` beside `app.json`, or a name in NFC
/// beside the same in NFD), and a name that is a file and also a folder (explicitly, `a/`,
/// or implicitly, as the parent of `a/b`).
fn check_collisions(names: &[String]) -> Result<(), ArchiveError> {
    use std::collections::BTreeMap;
    use unicode_normalization::UnicodeNormalization;
    let fold = |n: &str| -> String { n.nfc().collect::<String>().to_lowercase().nfc().collect() };
    let mut files: BTreeMap<String, &str> = BTreeMap::new();
    let mut folders: BTreeSet<String> = BTreeSet::new();
    for name in names {
        let (path, is_dir) = match name.strip_suffix('/') {
            Some(p) => (p, true),
            None => (name.as_str(), false),
        };
        let key = fold(path);
        if is_dir {
            folders.insert(key);
        } else if let Some(other) = files.insert(key, name) {
            return Err(ArchiveError::Collision {
                name: name.clone(),
                other: other.to_string(),
            });
        }
        // Every parent of this entry is a folder.
        let mut parent = path;
        while let Some((up, _)) = parent.rsplit_once('/') {
            folders.insert(fold(up));
            parent = up;
        }
    }
    for key in &folders {
        if let Some(file) = files.get(key) {
            return Err(ArchiveError::FileAndFolder {
                name: file.to_string(),
            });
        }
    }
    Ok(())
}

/// The single top folder (with its slash) when every entry sits below one and there is no
/// root `app.json`; "" otherwise.
fn prefix_of<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Result<String, ArchiveError> {
    let files = names.filter(|n| !n.ends_with('/'));
    if files.clone().any(|n| n == "app.json") {
        return Ok(String::new());
    }
    let tops: BTreeSet<&str> = files
        .clone()
        .filter_map(|n| n.split_once('/').map(|(t, _)| t))
        .collect();
    let all_nested = files.clone().all(|n| n.contains('/'));
    match (tops.len(), all_nested) {
        (1, true) => Ok(format!(
            "{}/",
            tops.iter().next().copied().unwrap_or_default()
        )),
        _ => Err(ArchiveError::NoAppJson),
    }
}

/// Largest `app.json` accepted: it is the one entry held in memory.
pub const MAX_APP_JSON_BYTES: u64 = 1 << 20;

/// Reads every entry of a template archive within `limits` and returns its manifest.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<TemplateManifest, ArchiveError> {
    let size = bytes.len() as u64;
    if size > limits.max_archive_bytes {
        return Err(ArchiveError::TooLarge {
            size,
            limit: limits.max_archive_bytes,
        });
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes))?;
    if zip.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    // The reader indexes entries by name, so a second entry with a name already seen would
    // silently vanish (and other unzip tools might pick that one): walk the central directory
    // ourselves and insist that it names exactly what the reader sees, each name once.
    let records = central_directory(bytes, limits.max_entries)?;
    let listed = checked_names(bytes, &records)?;
    let mut seen = BTreeSet::new();
    for name in &listed {
        if !seen.insert(name.as_str()) {
            return Err(ArchiveError::Duplicate { name: name.clone() });
        }
    }
    let reader: BTreeSet<String> = (0..zip.len())
        .map(|i| {
            zip.name_for_index(i)
                .map(str::to_string)
                .unwrap_or_default()
        })
        .collect();
    if listed.len() != zip.len() || reader.iter().any(|n| !seen.contains(n.as_str())) {
        return Err(corrupt(format!(
            "the central directory lists {} entries but the archive reads as {}",
            listed.len(),
            zip.len()
        )));
    }
    for name in &listed {
        check_path(name).map_err(|why| ArchiveError::UnsafePath {
            name: name.clone(),
            why,
        })?;
    }
    check_collisions(&listed)?;
    // Only the root app.json is read into memory; every other entry is counted and dropped.
    let prefix = prefix_of(listed.iter().map(String::as_str))?;
    let app_json_name = format!("{prefix}app.json");
    let ratio_limit = size.max(1).saturating_mul(limits.max_ratio);
    let total_limit = limits.max_total_bytes.min(ratio_limit);
    let mut total = 0u64;
    let mut names = BTreeSet::new();
    let mut app_json: Option<Vec<u8>> = None;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        check_path(&name).map_err(|why| ArchiveError::UnsafePath {
            name: name.clone(),
            why,
        })?;
        if entry.unix_mode().is_some_and(|m| m & S_IFMT == S_IFLNK) {
            return Err(ArchiveError::Symlink { name });
        }
        if entry.encrypted() {
            return Err(ArchiveError::Encrypted { name });
        }
        if entry.is_dir() {
            continue;
        }
        if !names.insert(name.clone()) {
            return Err(ArchiveError::Duplicate { name });
        }
        let entry_limit = limits.max_entry_bytes;
        let n = if name == app_json_name {
            let mut buf = vec![];
            (&mut entry)
                .take(MAX_APP_JSON_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
            if buf.len() as u64 > MAX_APP_JSON_BYTES {
                return Err(ArchiveError::BadAppJson(format!(
                    "larger than {MAX_APP_JSON_BYTES} bytes"
                )));
            }
            let n = buf.len() as u64;
            app_json = Some(buf);
            n
        } else {
            let mut counter = Counter {
                n: 0,
                limit: entry_limit,
            };
            match io::copy(&mut entry, &mut counter) {
                Ok(n) => n,
                Err(_) if counter.n > entry_limit => counter.n,
                Err(e) => return Err(ArchiveError::Corrupt(format!("entry \"{name}\": {e}"))),
            }
        };
        if n > entry_limit {
            return Err(ArchiveError::EntryTooLarge {
                name,
                limit: entry_limit,
            });
        }
        total += n;
        if total > total_limit {
            return Err(if total > limits.max_total_bytes {
                ArchiveError::TotalTooLarge {
                    limit: limits.max_total_bytes,
                }
            } else {
                ArchiveError::RatioTooHigh {
                    ratio: total / size.max(1),
                    limit: limits.max_ratio,
                }
            });
        }
    }
    let app_json = app_json.ok_or(ArchiveError::NoAppJson)?;
    let pages = parse_pages(&app_json)?;
    let files = names
        .iter()
        .map(|n| n[prefix.len()..].to_string())
        .collect();
    Ok(TemplateManifest {
        prefix,
        files,
        pages,
    })
}

/// Writes the full package: every template entry copied raw (not recompressed, so unchanged),
/// with the single top folder stripped, then the generated `ext.json`.
pub fn write_package<W: Write + Seek>(
    template: &[u8],
    manifest: &TemplateManifest,
    ext_json: &str,
    out: W,
) -> Result<W, ArchiveError> {
    let mut zip = ZipArchive::new(Cursor::new(template))?;
    let mut writer = ZipWriter::new(out);
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i)?;
        if entry.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let stripped = name
            .strip_prefix(&manifest.prefix)
            .unwrap_or(&name)
            .to_string();
        if stripped == "ext.json" {
            // The generated ext.json replaces any the template ships.
            continue;
        }
        writer.raw_copy_file_rename(entry, stripped)?;
    }
    writer.start_file("ext.json", SimpleFileOptions::default())?;
    writer
        .write_all(ext_json.as_bytes())
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    Ok(writer.finish()?)
}

/// One file of a template (its path below the manifest's prefix), inflated up to `max_bytes`:
/// `Ok(None)` when the template has no such file, `Err(TooLarge)` past the bound (counted on
/// the bytes inflated, as everywhere here).
pub fn read_entry(
    template: &[u8],
    manifest: &TemplateManifest,
    path: &str,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let mut zip = ZipArchive::new(Cursor::new(template))?;
    let full = format!("{}{}", manifest.prefix, path);
    let mut entry = match zip.by_name(&full) {
        Ok(e) => e,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if entry.is_dir() {
        return Ok(None);
    }
    let mut out = Vec::new();
    (&mut entry)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    if out.len() as u64 > max_bytes {
        return Err(ArchiveError::EntryTooLarge {
            name: path.to_string(),
            limit: max_bytes,
        });
    }
    Ok(Some(out))
}

/// Builds a template zip from (path, bytes) pairs: for the demo, tests and benchmarks.
pub fn zip_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<u8>, ArchiveError> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files {
        writer.start_file(name, SimpleFileOptions::default())?;
        writer
            .write_all(bytes)
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    }
    Ok(writer.finish()?.into_inner())
}

/// A small valid template with the given pages, each with its four files.
pub fn sample_template(pages: &[&str]) -> Result<Vec<u8>, ArchiveError> {
    let app_json = serde_json::json!({
        "pages": pages,
        "window": {"navigationBarTitleText": "smartpkg demo"},
    })
    .to_string();
    let mut files: Vec<(String, Vec<u8>)> = vec![("app.json".into(), app_json.into_bytes())];
    files.push(("app.js".into(), b"App({});\n".to_vec()));
    for p in pages {
        files.push((
            format!("{p}.swan"),
            format!("<view>{p}</view>\n").into_bytes(),
        ));
        files.push((format!("{p}.js"), b"Page({ data: {} });\n".to_vec()));
        files.push((format!("{p}.css"), b"view { color: #333; }\n".to_vec()));
        files.push((format!("{p}.json"), b"{}\n".to_vec()));
    }
    zip_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
}

#[cfg(test)]
mod tests;
