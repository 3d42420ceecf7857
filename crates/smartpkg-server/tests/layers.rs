//! The server's modules form layers, checked on its source: the faces (the Baidu API, the
//! WeChat API, the admin API, the console, the runtime channel) each parse their own wire and
//! call the application layer; none imports another; nothing below them imports a face or reaches up
//! to the crate root; the modules import each other without a cycle; and the application
//! layer speaks no HTTP and no wire type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FACES: [&str; 5] = ["admin", "baidu", "console", "runtime", "wechat"];
/// The composition root: it builds the router from the faces and starts everything (and the
/// demo, which seeds a platform through every layer for `serve --demo`).
const ROOT: [&str; 2] = ["lib", "demo"];
/// What the crate root re-exports or defines for the binary: reaching it from a module goes
/// up through the root.
const ROOT_ITEMS: [&str; 8] = [
    "AppState",
    "Shared",
    "Settings",
    "AuditMode",
    "Running",
    "StartError",
    "start",
    "router",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`console/queue.rs` → `console`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// Everything a file names as `crate::X…`, by X, outside comments.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first segment of each item.
                let mut depth = 0;
                let mut item = String::new();
                for c in list.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.insert(first_segment(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        item.push(c);
                    }
                }
                out.insert(first_segment(&item));
            } else {
                out.insert(first_segment(rest));
            }
        }
    }
    out.remove("");
    out
}

fn first_segment(s: &str) -> String {
    s.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

struct Source {
    /// Module → the modules (and root items) it names.
    refs: BTreeMap<String, BTreeSet<String>>,
    /// Module → its files' text.
    text: BTreeMap<String, String>,
}

fn source() -> Source {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = vec![];
    files(&src, &mut all);
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    for f in all {
        let body = std::fs::read_to_string(&f).expect("read");
        let m = module_of(&src, &f);
        let mut r = crate_refs(&body);
        r.remove(&m);
        refs.entry(m.clone()).or_default().extend(r);
        text.entry(m).or_default().push_str(&body);
    }
    Source { refs, text }
}

#[test]
fn no_face_imports_another_face() {
    let s = source();
    for face in FACES {
        let bad: Vec<&String> = s.refs[face]
            .iter()
            .filter(|r| FACES.contains(&r.as_str()))
            .collect();
        assert!(bad.is_empty(), "{face} imports the face(s) {bad:?}");
    }
}

#[test]
fn nothing_below_the_faces_imports_a_face_or_reaches_up_to_the_crate_root() {
    let s = source();
    for (m, r) in &s.refs {
        if FACES.contains(&m.as_str()) || ROOT.contains(&m.as_str()) {
            continue;
        }
        let bad: Vec<&String> = r
            .iter()
            .filter(|x| {
                FACES.contains(&x.as_str())
                    || ROOT.contains(&x.as_str())
                    || ROOT_ITEMS.contains(&x.as_str())
            })
            .collect();
        assert!(bad.is_empty(), "{m} (below the faces) names {bad:?}");
    }
    // The faces too reach shared things where they live, not through the root.
    for face in FACES {
        let bad: Vec<&String> = s.refs[face]
            .iter()
            .filter(|x| ROOT_ITEMS.contains(&x.as_str()) || ROOT.contains(&x.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "{face} names {bad:?} through the crate root"
        );
    }
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let s = source();
    let modules: BTreeSet<&str> = s
        .refs
        .keys()
        .map(String::as_str)
        .filter(|m| !ROOT.contains(m))
        .collect();
    let edges: BTreeMap<&str, Vec<&str>> = modules
        .iter()
        .map(|m| {
            let to = s.refs[*m]
                .iter()
                .map(String::as_str)
                .filter(|t| modules.contains(t))
                .collect();
            (*m, to)
        })
        .collect();
    // Depth-first search; a module met again while on the path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|p| *p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m);
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m);
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        let cycle = visit(m, &edges, &mut vec![], &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap_or_default().join(" → ")
        );
    }
}

#[test]
fn the_application_layer_speaks_no_http_and_no_wire_type() {
    let s = source();
    let app = &s.text["application"];
    for word in [
        "axum",
        "StatusCode",
        "http::",
        "smartpkg_types",
        "Json",
        "hyper",
    ] {
        let hits: Vec<&str> = app
            .lines()
            .filter(|l| !l.trim_start().starts_with("//") && l.contains(word))
            .collect();
        assert!(hits.is_empty(), "application names {word}: {hits:?}");
    }
}

#[test]
fn the_check_itself_sees_imports_in_every_form() {
    let r = crate_refs(
        "use crate::a::B;\nuse crate::{c, d::E, f::{g, h}};\nlet x = crate::i::j(); // crate::comment\n",
    );
    let want: BTreeSet<String> = ["a", "c", "d", "f", "i"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(r, want);
}
