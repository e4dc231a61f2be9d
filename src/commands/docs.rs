//! COMMAND DOCS / COMMAND INFO replies built from the command table's synopsis strings.
//! Pure functions; run on whichever shard serves the COMMAND call.
//!
//! A row's `syntax` (Redis docs notation, e.g. `key value [NX | XX] [EX seconds | KEEPTTL]`)
//! is parsed into Redis 7's argument tree: `[..]` is optional, `<..>` a required group,
//! `|` alternatives (a `oneof`), `X [X ...]` a `multiple` argument, an UPPERCASE word alone a
//! `pure-token`, and an UPPERCASE word before a lowercase one that argument's `token`.
//! redis-cli 7 builds its interactive hints from this tree.

use super::table::{CommandSpec, KeySpec, CATEGORY_NAMES, WRITE};
use crate::protocol::reply::Reply;

/// An argument's type, as COMMAND DOCS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    Key,
    String,
    Integer,
    Double,
    Pattern,
    UnixTime,
    PureToken,
    OneOf,
    Block,
}

impl ArgType {
    pub fn name(self) -> &'static str {
        match self {
            ArgType::Key => "key",
            ArgType::String => "string",
            ArgType::Integer => "integer",
            ArgType::Double => "double",
            ArgType::Pattern => "pattern",
            ArgType::UnixTime => "unix-time",
            ArgType::PureToken => "pure-token",
            ArgType::OneOf => "oneof",
            ArgType::Block => "block",
        }
    }
}

/// One node of a command's argument tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocArg {
    pub name: String,
    pub kind: ArgType,
    pub token: Option<String>,
    pub optional: bool,
    pub multiple: bool,
    pub args: Vec<DocArg>,
}

impl DocArg {
    fn leaf(name: &str, kind: ArgType, token: Option<String>) -> DocArg {
        DocArg {
            name: name.to_string(),
            kind,
            token,
            optional: false,
            multiple: false,
            args: Vec::new(),
        }
    }

    /// Groups several arguments into one (a block), or returns the only one.
    fn group(mut items: Vec<DocArg>) -> Option<DocArg> {
        match items.len() {
            0 => None,
            1 => items.pop(),
            _ => Some(DocArg {
                name: join_names(&items),
                kind: ArgType::Block,
                token: None,
                optional: false,
                multiple: false,
                args: items,
            }),
        }
    }
}

fn join_names(items: &[DocArg]) -> String {
    items
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join("_")
}

/// Redis's names for the common alternatives (`[NX | XX]` is `condition`); otherwise the
/// alternatives' names joined with `_`.
fn oneof_name(children: &[DocArg]) -> String {
    let has = |set: &[&str]| {
        children
            .iter()
            .any(|c| c.token.as_deref().is_some_and(|t| set.contains(&t)))
    };
    if has(&["NX", "XX", "GT", "LT"]) {
        "condition".into()
    } else if has(&["EX", "PX", "EXAT", "PXAT"]) {
        "expiration".into()
    } else if has(&["ASYNC", "SYNC"]) {
        "flush-type".into()
    } else {
        join_names(children)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Open(u8),
    Close(u8),
    Bar,
    Ellipsis,
    Word(&'a str),
}

fn tokenize(s: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' | b'<' => {
                out.push(Tok::Open(b[i]));
                i += 1;
            }
            b']' | b'>' => {
                out.push(Tok::Close(b[i]));
                i += 1;
            }
            b'|' => {
                out.push(Tok::Bar);
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                let start = i;
                while i < b.len() && !b"[]<>| \t\r\n".contains(&b[i]) {
                    i += 1;
                }
                let w = &s[start..i];
                if w == "..." {
                    out.push(Tok::Ellipsis);
                } else {
                    out.push(Tok::Word(w));
                }
            }
        }
    }
    out
}

/// The type Redis gives an argument with this (lowercase) name.
fn kind_of(name: &str) -> ArgType {
    const KEYS: &[&str] = &["key", "newkey", "source", "destination"];
    const INTS: &[&str] = &[
        "seconds",
        "milliseconds",
        "count",
        "offset",
        "index",
        "increment",
        "decrement",
        "start",
        "end",
        "cursor",
        "timeout",
        "db",
        "destination-db",
        "index1",
        "index2",
        "client-id",
        "numkeys",
    ];
    if KEYS.contains(&name) {
        ArgType::Key
    } else if name.starts_with("unix-time") {
        ArgType::UnixTime
    } else if INTS.contains(&name) {
        ArgType::Integer
    } else if name == "pattern" {
        ArgType::Pattern
    } else {
        ArgType::String
    }
}

fn is_token(w: &str) -> bool {
    w.bytes().any(|c| c.is_ascii_uppercase())
        && w.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Parses a synopsis into Redis's argument tree. Never fails: unbalanced brackets close
/// at the end of the string.
pub fn parse_syntax(s: &str) -> Vec<DocArg> {
    let toks = tokenize(s);
    let mut pos = 0;
    let alts = parse_alts(&toks, &mut pos);
    flatten_alts(alts)
}

/// A sequence of alternatives (`a | b | c`); one alternative means a plain sequence.
fn parse_alts(toks: &[Tok], pos: &mut usize) -> Vec<Vec<DocArg>> {
    let mut alts = vec![parse_seq(toks, pos)];
    while let Some(Tok::Bar) = toks.get(*pos) {
        *pos += 1;
        alts.push(parse_seq(toks, pos));
    }
    alts
}

fn flatten_alts(mut alts: Vec<Vec<DocArg>>) -> Vec<DocArg> {
    if alts.len() == 1 {
        return alts.pop().unwrap_or_default();
    }
    let children: Vec<DocArg> = alts.into_iter().filter_map(DocArg::group).collect();
    vec![DocArg {
        name: oneof_name(&children),
        kind: ArgType::OneOf,
        token: None,
        optional: false,
        multiple: false,
        args: children,
    }]
}

fn parse_seq(toks: &[Tok], pos: &mut usize) -> Vec<DocArg> {
    let mut out: Vec<DocArg> = Vec::new();
    // An UPPERCASE word waiting to see whether an argument follows it.
    let mut pending: Option<String> = None;
    let flush = |pending: &mut Option<String>, out: &mut Vec<DocArg>| {
        if let Some(t) = pending.take() {
            out.push(DocArg::leaf(
                &t.to_ascii_lowercase(),
                ArgType::PureToken,
                Some(t),
            ));
        }
    };
    while let Some(t) = toks.get(*pos) {
        match t {
            Tok::Bar | Tok::Close(_) => break,
            Tok::Ellipsis => {
                *pos += 1;
                flush(&mut pending, &mut out);
                if let Some(last) = out.last_mut() {
                    last.multiple = true;
                }
            }
            Tok::Word(w) => {
                *pos += 1;
                if is_token(w) {
                    flush(&mut pending, &mut out);
                    pending = Some(w.to_string());
                } else {
                    let lower = w.to_ascii_lowercase();
                    out.push(DocArg::leaf(&lower, kind_of(&lower), pending.take()));
                }
            }
            Tok::Open(kind) => {
                let kind = *kind;
                *pos += 1;
                let mut inner = parse_alts(toks, pos);
                if let Some(Tok::Close(_)) = toks.get(*pos) {
                    *pos += 1;
                }
                // `[X ...]` right after X: X repeats.
                let repeat = inner.len() == 1
                    && inner
                        .first()
                        .and_then(|seq| seq.last())
                        .is_some_and(|a| a.multiple);
                if repeat {
                    let mut seq = inner.pop().unwrap_or_default();
                    if let Some(a) = seq.last_mut() {
                        a.multiple = false;
                    }
                    let n = seq.len();
                    let tail_matches = pending.is_none()
                        && n > 0
                        && out.len() >= n
                        && out[out.len() - n..]
                            .iter()
                            .zip(&seq)
                            .all(|(a, b)| a.name == b.name && a.kind == b.kind);
                    if tail_matches {
                        let prev = out.split_off(out.len() - n);
                        if let Some(mut g) = DocArg::group(prev) {
                            g.multiple = true;
                            out.push(g);
                        }
                        continue;
                    }
                    inner = vec![seq];
                    flush(&mut pending, &mut out);
                    if let Some(mut g) = DocArg::group(flatten_alts(inner)) {
                        g.multiple = true;
                        g.optional = kind == b'[';
                        out.push(g);
                    }
                    continue;
                }
                let items = flatten_alts(inner);
                let group = DocArg::group(items);
                if let Some(mut g) = group {
                    if kind == b'[' {
                        g.optional = true;
                    }
                    // `TOKEN <a | b>`: the token introduces the group.
                    if let Some(tk) = pending.take() {
                        if g.token.is_none() && g.kind != ArgType::PureToken {
                            g.token = Some(tk);
                        } else {
                            out.push(DocArg::leaf(
                                &tk.to_ascii_lowercase(),
                                ArgType::PureToken,
                                Some(tk),
                            ));
                        }
                    }
                    out.push(g);
                } else {
                    flush(&mut pending, &mut out);
                }
            }
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// One argument as COMMAND DOCS prints it (a map; a flat array in RESP2).
pub fn arg_reply(a: &DocArg) -> Reply {
    let mut m = vec![
        (Reply::bulk("name"), Reply::bulk(a.name.clone())),
        (Reply::bulk("type"), Reply::bulk(a.kind.name())),
    ];
    if a.kind == ArgType::Key {
        m.push((Reply::bulk("key_spec_index"), Reply::Int(0)));
    }
    if let Some(t) = &a.token {
        m.push((Reply::bulk("token"), Reply::bulk(t.clone())));
    }
    let mut flags = Vec::new();
    if a.optional {
        flags.push(Reply::status("optional"));
    }
    if a.multiple {
        flags.push(Reply::status("multiple"));
    }
    if !flags.is_empty() {
        m.push((Reply::bulk("flags"), Reply::Set(flags)));
    }
    if !a.args.is_empty() {
        m.push((
            Reply::bulk("arguments"),
            Reply::Array(a.args.iter().map(arg_reply).collect()),
        ));
    }
    Reply::Map(m)
}

/// ACL categories as COMMAND INFO prints them (`@name`, Redis's order).
pub fn category_replies(cats: u32) -> Vec<Reply> {
    CATEGORY_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| cats & (1 << i) != 0)
        .map(|(_, n)| Reply::Status(bytes::Bytes::from(format!("@{n}"))))
        .collect()
}

fn key_specs(spec: &CommandSpec) -> Vec<Reply> {
    let k: KeySpec = spec.keys;
    if k.first <= 0 {
        return Vec::new();
    }
    let access: &[&'static str] = if spec.flags & WRITE != 0 {
        &["RW", "update"]
    } else {
        &["RO", "access"]
    };
    // Redis's lastkey is relative to the first key (or negative: from the end).
    let lastkey = if k.last < 0 { k.last } else { k.last - k.first };
    // A numkeys command searches from its count argument and finds `keynum` keys.
    let begin = if k.numkeys > 0 { k.numkeys } else { k.first };
    let bs = Reply::Map(vec![
        (Reply::bulk("type"), Reply::bulk("index")),
        (
            Reply::bulk("spec"),
            Reply::Map(vec![(Reply::bulk("index"), Reply::Int(begin as i64))]),
        ),
    ]);
    let keynum = Reply::Map(vec![
        (Reply::bulk("type"), Reply::bulk("keynum")),
        (
            Reply::bulk("spec"),
            Reply::Map(vec![
                (Reply::bulk("keynumidx"), Reply::Int(0)),
                (Reply::bulk("firstkey"), Reply::Int(1)),
                (Reply::bulk("keystep"), Reply::Int(k.step as i64)),
            ]),
        ),
    ]);
    let fk = if k.numkeys > 0 {
        keynum
    } else {
        Reply::Map(vec![
            (Reply::bulk("type"), Reply::bulk("range")),
            (
                Reply::bulk("spec"),
                Reply::Map(vec![
                    (Reply::bulk("lastkey"), Reply::Int(lastkey as i64)),
                    (Reply::bulk("keystep"), Reply::Int(k.step as i64)),
                    (Reply::bulk("limit"), Reply::Int(0)),
                ]),
            ),
        ])
    };
    vec![Reply::Map(vec![
        (
            Reply::bulk("flags"),
            Reply::Set(access.iter().map(|f| Reply::status(f)).collect()),
        ),
        (Reply::bulk("begin_search"), bs),
        (Reply::bulk("find_keys"), fk),
    ])]
}

/// COMMAND INFO's 10-element array for one command, subcommands included.
pub fn command_info(spec: &CommandSpec) -> Reply {
    let subs: Vec<Reply> = spec
        .subcommands
        .iter()
        .map(|(sub, arity, args)| {
            // The container's key positions belong to the subcommands that take a key
            // (OBJECT ENCODING, MEMORY USAGE), as Redis reports them.
            let keyed = spec.keys.first > 0 && args.starts_with("key");
            let (flags, cats) = spec
                .sub_info(sub.as_bytes())
                .unwrap_or((spec.flags, spec.categories()));
            let (first, last, step) = if keyed {
                (spec.keys.first, spec.keys.last, spec.keys.step)
            } else {
                (0, 0, 0)
            };
            Reply::Array(vec![
                Reply::bulk(format!("{}|{}", spec.name, sub)),
                Reply::Int(*arity as i64),
                Reply::Set(spec.flag_names_of(flags)),
                Reply::Int(first as i64),
                Reply::Int(last as i64),
                Reply::Int(step as i64),
                Reply::Set(category_replies(cats)),
                Reply::Set(Vec::new()),
                Reply::Set(if keyed { key_specs(spec) } else { Vec::new() }),
                Reply::Set(Vec::new()),
            ])
        })
        .collect();
    // A container's own row carries no flags (but COMMAND's), as in Redis.
    let cats = category_replies(spec.categories());
    let flags = if spec.subcommands.is_empty() {
        spec.flag_names()
    } else {
        spec.flag_names_of(spec.container_flags)
    };
    // Movable-key commands report 0 0 0 (and the `movablekeys` flag), as Redis does.
    // A destination before the count (ZUNIONSTORE) is reported as `1 1 1`, as Redis does.
    // A container reports 0 0 0 and no key specs: its subcommands carry them.
    let container = !spec.subcommands.is_empty();
    let (first, last, step) = if !container
        && spec.keys.first > 0
        && (spec.keys.numkeys == 0 || spec.keys.first < spec.keys.numkeys)
    {
        (spec.keys.first, spec.keys.last, spec.keys.step)
    } else {
        (0, 0, 0)
    };
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Int(spec.arity as i64),
        Reply::Set(flags),
        Reply::Int(first as i64),
        Reply::Int(last as i64),
        Reply::Int(step as i64),
        Reply::Set(cats),
        Reply::Set(Vec::new()),
        Reply::Set(if container {
            Vec::new()
        } else {
            key_specs(spec)
        }),
        // Redis writes an empty set when there are none, an array otherwise.
        if subs.is_empty() {
            Reply::Set(subs)
        } else {
            Reply::Array(subs)
        },
    ])
}

fn doc_map(summary: &str, since: &str, group: &str, syntax: &str) -> Vec<(Reply, Reply)> {
    let mut m = vec![
        (Reply::bulk("summary"), Reply::bulk(summary.to_string())),
        (Reply::bulk("since"), Reply::bulk(since.to_string())),
        (Reply::bulk("group"), Reply::bulk(group.to_string())),
    ];
    let args = parse_syntax(syntax);
    if !args.is_empty() {
        m.push((
            Reply::bulk("arguments"),
            Reply::Array(args.iter().map(arg_reply).collect()),
        ));
    }
    m
}

/// COMMAND DOCS's map for one command (its name is the key in the outer map).
pub fn command_docs(spec: &CommandSpec) -> Reply {
    let mut m = doc_map(spec.summary, spec.since, spec.group, spec.syntax);
    if !spec.subcommands.is_empty() {
        // Containers document their subcommands, not a synopsis of their own.
        m.retain(|(k, _)| *k != Reply::bulk("arguments"));
        let subs = spec
            .subcommands
            .iter()
            .map(|(sub, _, syntax)| {
                let summary = format!(
                    "The {} {} subcommand.",
                    spec.name.to_ascii_uppercase(),
                    sub.to_ascii_uppercase()
                );
                (
                    Reply::bulk(format!("{}|{}", spec.name, sub)),
                    Reply::Map(doc_map(&summary, spec.since, spec.group, syntax)),
                )
            })
            .collect();
        m.push((Reply::bulk("subcommands"), Reply::Map(subs)));
    }
    Reply::Map(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: &[DocArg]) -> Vec<(&str, &str)> {
        a.iter().map(|x| (x.name.as_str(), x.kind.name())).collect()
    }

    #[test]
    fn set_synopsis() {
        let a = parse_syntax(
            "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
        );
        assert_eq!(
            names(&a),
            vec![
                ("key", "key"),
                ("value", "string"),
                ("condition", "oneof"),
                ("get", "pure-token"),
                ("expiration", "oneof")
            ]
        );
        assert!(a[2].optional && !a[2].multiple);
        assert_eq!(a[2].args[0].token.as_deref(), Some("NX"));
        assert_eq!(a[3].token.as_deref(), Some("GET"));
        assert!(a[3].optional);
        let exp = &a[4].args;
        assert_eq!(exp[0].token.as_deref(), Some("EX"));
        assert_eq!(exp[0].kind, ArgType::Integer);
        assert_eq!(exp[2].kind, ArgType::UnixTime);
        assert_eq!(exp[4].kind, ArgType::PureToken);
        assert!(!a[0].optional && !a[1].optional);
    }

    #[test]
    fn repeats_and_tokens() {
        let a = parse_syntax("key [key ...]");
        assert_eq!(a.len(), 1);
        assert!(a[0].multiple && !a[0].optional);
        let a = parse_syntax("key value [key value ...]");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, ArgType::Block);
        assert!(a[0].multiple);
        assert_eq!(names(&a[0].args), vec![("key", "key"), ("value", "string")]);
        let a = parse_syntax("cursor [MATCH pattern] [COUNT count] [TYPE type]");
        assert_eq!(a[1].token.as_deref(), Some("MATCH"));
        assert_eq!(a[1].kind, ArgType::Pattern);
        assert!(a[1].optional);
        assert_eq!(a[2].kind, ArgType::Integer);
        assert_eq!(a[3].name, "type");
        let a = parse_syntax("subcommand [argument ...]");
        assert!(a[1].optional && a[1].multiple);
        let a = parse_syntax("[ID client-id [client-id ...]]");
        assert_eq!(a.len(), 1);
        assert!(a[0].optional);
        let a = parse_syntax("[TYPE <NORMAL | MASTER>]");
        assert_eq!(a[0].kind, ArgType::OneOf);
        assert_eq!(a[0].name, "normal_master");
        assert_eq!(a[0].token.as_deref(), Some("TYPE"));
        assert!(parse_syntax("").is_empty());
        // Unbalanced input does not panic.
        let _ = parse_syntax("[a <b | ] ... >> [[");
    }

    #[test]
    fn info_shape() {
        let t = super::super::table::table();
        let (_, get) = t.lookup(b"get").unwrap();
        let Reply::Array(v) = command_info(get) else {
            panic!("not an array")
        };
        assert_eq!(v.len(), 10);
        assert_eq!(v[0], Reply::bulk("get"));
        assert_eq!(v[1], Reply::Int(2));
        assert_eq!(
            (&v[3], &v[4], &v[5]),
            (&Reply::Int(1), &Reply::Int(1), &Reply::Int(1))
        );
        let mut out = Vec::new();
        command_info(get).encode(2, &mut out);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("+readonly\r\n+fast\r\n"), "{s}");
        assert!(s.contains("+@read\r\n+@string\r\n+@fast\r\n"), "{s}");
    }
}
