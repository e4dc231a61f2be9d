//! The layering the README's module graph shows: nothing on the engine side (`commands`,
//! `coord`, `engine`, `persist`, `shard`, `types`, `config`, `acl`) or in the base
//! (`protocol`, `runtime`, `util`, `error`, `log`, `role`, `tls`, `directives`) names a
//! front-layer module (`server`, `repl`, `scripting`, `sentinel`). Test modules and single
//! `#[cfg(test)]` items are left out (unit tests may build the whole table).

use std::path::Path;

const LOWER: &[&str] = &[
    "commands",
    "coord",
    "engine",
    "persist",
    "shard",
    "types",
    "config.rs",
    "acl.rs",
    "protocol",
    "runtime",
    "util",
    "error.rs",
    "log.rs",
    "role.rs",
    "tls.rs",
    "directives.rs",
];
const FRONT: &[&str] = &["server", "repl", "scripting", "sentinel"];

fn rust_files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            rust_files(&e.path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The code of a file without comments, its `mod tests` and single `#[cfg(test)]` items.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::new();
    let mut skip_next = false;
    for line in text.lines() {
        let l = line.trim_start();
        if skip_next {
            skip_next = false;
            continue;
        }
        if l.starts_with("#[cfg(test)]") {
            skip_next = true;
            continue;
        }
        let l = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[test]
fn the_engine_side_never_names_the_front_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for m in LOWER {
        let p = src.join(m);
        assert!(p.exists(), "{} is gone: update this test", p.display());
        rust_files(&p, &mut files);
    }
    assert!(files.len() > 50, "{} files", files.len());
    let mut found = Vec::new();
    for f in &files {
        let text = code(&std::fs::read_to_string(f).unwrap());
        for front in FRONT {
            for pat in [format!("crate::{front}::"), format!("crate::{front};")] {
                if text.contains(&pat) {
                    found.push(format!("{} names {front}", f.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_scanner_sees_what_it_looks_for() {
    let text = "use crate::server::worker::Worker;\n// crate::repl::x\n#[cfg(test)]\nuse crate::repl::y;\n";
    let c = code(text);
    assert!(c.contains("crate::server::"));
    assert!(!c.contains("crate::repl::"));
}
