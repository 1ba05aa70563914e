//! COMMAND's replies — INFO (arity, flags, keys) and DOCS (summaries and arguments, which
//! redis-cli 7 turns into its hints) — per application, in a [`Table`]: for Redis's own
//! commands, Redis 7.0.15's replies, captured by `tools/kv/capture-command-table` into
//! `commands/`; for an application's own commands, made in the same shape from their
//! [`Spec`]s.

use std::borrow::Cow;
use std::sync::OnceLock;

use crate::apps::resp::reply;
use crate::apps::resp::scan::reply_len;
use crate::apps::server::local;

/// One command's entries.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    info: Cow<'static, [u8]>,
    docs: Cow<'static, [u8]>,
}

/// A command of an application's own (not Redis's), as COMMAND describes it.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Its name, lower case.
    pub name: &'static str,
    /// Redis's arity: the argument count with the name, or at least its absolute value
    /// when negative.
    pub arity: i64,
    /// Whether it may change the state (else it is a read).
    pub write: bool,
    /// One line on what it does.
    pub summary: &'static str,
    /// Its arguments, for redis-cli's hints.
    pub arguments: &'static [Argument],
}

/// An argument of a [`Spec`].
#[derive(Clone, Copy, Debug)]
pub struct Argument {
    /// Its name.
    pub name: &'static str,
    /// An integer (else a string).
    pub integer: bool,
    /// It may be left out.
    pub optional: bool,
}

/// What COMMAND answers for one application.
#[derive(Debug)]
pub struct Table {
    entries: Vec<Entry>,
}

static INFO: &[u8] = include_bytes!("commands/info.resp");
static DOCS: &[u8] = include_bytes!("commands/docs.resp");

/// The array header's element count and the bytes after it.
fn array(bytes: &'static [u8]) -> (usize, &'static [u8]) {
    let end = bytes.iter().position(|&byte| byte == b'\r').expect("a captured array header");
    let count = std::str::from_utf8(&bytes[1..end]).expect("digits").parse().expect("a count");
    (count, &bytes[end + 2..])
}

/// The next whole reply off the front.
fn next(bytes: &mut &'static [u8]) -> &'static [u8] {
    let len = reply_len(bytes).expect("captured replies are RESP").expect("captured replies are whole");
    let (item, rest) = bytes.split_at(len);
    *bytes = rest;
    item
}

fn bulk_text(item: &[u8]) -> String {
    let start = item.iter().position(|&byte| byte == b'\n').expect("a bulk") + 1;
    String::from_utf8_lossy(&item[start..item.len() - 2]).into_owned()
}

/// Redis's entries, as captured.
fn captured() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let (count, mut infos) = array(INFO);
        let (pairs, mut docs) = array(DOCS);
        assert_eq!(pairs, count * 2, "INFO and DOCS of the same commands");
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let info = next(&mut infos);
            let name = bulk_text(next(&mut docs));
            let doc = next(&mut docs);
            entries.push(Entry { name, info: Cow::Borrowed(info), docs: Cow::Borrowed(doc) });
        }
        entries
    })
}

/// COMMAND INFO's entry for one of an application's own commands.
fn spec_info(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    reply::array(&mut out, 10);
    reply::bulk(&mut out, spec.name.as_bytes());
    reply::integer(&mut out, spec.arity);
    reply::array(&mut out, 1);
    reply::simple(&mut out, if spec.write { "write" } else { "readonly" });
    // No keys: first, last, step.
    for _ in 0..3 {
        reply::integer(&mut out, 0);
    }
    reply::array(&mut out, 1);
    reply::simple(&mut out, if spec.write { "@write" } else { "@read" });
    // Tips, key specs, subcommands: none.
    for _ in 0..3 {
        reply::array(&mut out, 0);
    }
    out
}

/// COMMAND DOCS's entry for one of an application's own commands.
fn spec_docs(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    reply::array(&mut out, 8);
    for (field, value) in
        [("summary", spec.summary), ("since", env!("CARGO_PKG_VERSION")), ("group", "module")]
    {
        reply::bulk(&mut out, field.as_bytes());
        reply::bulk(&mut out, value.as_bytes());
    }
    reply::bulk(&mut out, b"arguments");
    reply::array(&mut out, spec.arguments.len());
    for argument in spec.arguments {
        reply::array(&mut out, if argument.optional { 6 } else { 4 });
        reply::bulk(&mut out, b"name");
        reply::bulk(&mut out, argument.name.as_bytes());
        reply::bulk(&mut out, b"type");
        reply::bulk(&mut out, if argument.integer { b"integer" } else { b"string" });
        if argument.optional {
            reply::bulk(&mut out, b"flags");
            reply::array(&mut out, 1);
            reply::simple(&mut out, "optional");
        }
    }
    out
}

impl Table {
    /// The front end's own commands and `redis` (Redis's commands the application
    /// serves, lower case) from Redis's captured replies, then the application's `own`.
    ///
    /// # Panics
    ///
    /// If a name of `redis` has no captured entry (recapture the table).
    pub fn new(redis: &[&str], own: &[Spec]) -> Table {
        let mut entries: Vec<Entry> = local::COMMANDS
            .iter()
            .chain(redis)
            .map(|name| {
                let found = captured().iter().find(|entry| entry.name == *name);
                found.unwrap_or_else(|| panic!("{name} has no captured COMMAND entry")).clone()
            })
            .collect();
        entries.extend(own.iter().map(|spec| Entry {
            name: spec.name.to_string(),
            info: Cow::Owned(spec_info(spec)),
            docs: Cow::Owned(spec_docs(spec)),
        }));
        Table { entries }
    }

    fn find(&self, name: &[u8]) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.name.as_bytes().eq_ignore_ascii_case(name))
    }

    /// COMMAND COUNT.
    pub fn count(&self, out: &mut Vec<u8>) {
        reply::integer(out, self.entries.len() as i64);
    }

    /// COMMAND INFO of `names` (nil for one not served), or of every command when none.
    pub fn info<'a>(&self, out: &mut Vec<u8>, names: impl ExactSizeIterator<Item = &'a [u8]>) {
        if names.len() == 0 {
            reply::array(out, self.entries.len());
            for entry in &self.entries {
                out.extend_from_slice(&entry.info);
            }
            return;
        }
        reply::array(out, names.len());
        for name in names {
            match self.find(name) {
                Some(entry) => out.extend_from_slice(&entry.info),
                None => out.extend_from_slice(reply::NULL),
            }
        }
    }

    /// COMMAND DOCS of `names` (those not served are left out), or of every command.
    pub fn docs<'a>(&self, out: &mut Vec<u8>, names: impl ExactSizeIterator<Item = &'a [u8]>) {
        let all = names.len() == 0;
        let chosen: Vec<&Entry> = if all {
            self.entries.iter().collect()
        } else {
            names.filter_map(|name| self.find(name)).collect()
        };
        reply::array(out, chosen.len() * 2);
        for entry in chosen {
            reply::bulk(out, entry.name.as_bytes());
            out.extend_from_slice(&entry.docs);
        }
    }

    /// COMMAND LIST: every name.
    pub fn list(&self, out: &mut Vec<u8>) {
        reply::array(out, self.entries.len());
        for entry in &self.entries {
            reply::bulk(out, entry.name.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::resp::Value;

    #[test]
    fn the_captured_table_covers_what_is_served() {
        let table = Table::new(crate::apps::kv::syntax::COMMANDS, &[]);
        let mut out = Vec::new();
        table.count(&mut out);
        let served = crate::apps::kv::syntax::COMMANDS.len() + local::COMMANDS.len();
        assert_eq!(out, format!(":{served}\r\n").as_bytes());
        out.clear();
        table.docs(&mut out, [&b"GET"[..], b"nosuch"].into_iter());
        assert!(out.starts_with(b"*2\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary\r\n"));
        out.clear();
        table.info(&mut out, [&b"nosuch"[..]].into_iter());
        assert_eq!(out, b"*1\r\n$-1\r\n");
    }

    #[test]
    fn own_commands_are_described_in_redis_shape() {
        const ARGUMENTS: &[Argument] = &[
            Argument { name: "who", integer: false, optional: false },
            Argument { name: "count", integer: true, optional: true },
        ];
        let spec = Spec { name: "frob", arity: -2, write: true, summary: "Frobs", arguments: ARGUMENTS };
        let table = Table::new(&[], &[spec]);
        let mut out = Vec::new();
        table.info(&mut out, [&b"FROB"[..], b"get"].into_iter());
        let (info, _) = Value::decode(&out).unwrap().unwrap();
        let items = info.as_array().unwrap();
        assert_eq!(items[1], Value::NullBulk, "get is not served by this table");
        let frob = items[0].as_array().unwrap();
        assert_eq!(
            (frob.len(), &frob[0], &frob[1]),
            (10, &Value::Bulk(b"frob".to_vec()), &Value::Integer(-2))
        );
        out.clear();
        table.docs(&mut out, [&b"frob"[..]].into_iter());
        let (docs, _) = Value::decode(&out).unwrap().unwrap();
        let docs = docs.as_array().unwrap()[1].as_array().unwrap();
        assert_eq!(docs[1], Value::Bulk(b"Frobs".to_vec()));
        let arguments = docs[7].as_array().unwrap();
        assert_eq!(
            arguments[1].as_array().unwrap()[5],
            Value::Array(vec![Value::Simple(b"optional".to_vec())])
        );
    }
}
