//! COMMAND's replies — INFO (arity, flags, keys) and DOCS (summaries and arguments, which
//! redis-cli 7 turns into its hints) — answered from Redis 7.0.15's own replies for the
//! commands served here, captured by `tools/kv/capture-command-table` into `commands/`.

use std::sync::OnceLock;

use crate::apps::resp::reply;
use crate::apps::resp::scan::reply_len;

/// One command's entries.
struct Entry {
    name: String,
    info: &'static [u8],
    docs: &'static [u8],
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

fn entries() -> &'static [Entry] {
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
            entries.push(Entry { name, info, docs: doc });
        }
        entries
    })
}

fn find(name: &[u8]) -> Option<&'static Entry> {
    entries().iter().find(|entry| entry.name.as_bytes().eq_ignore_ascii_case(name))
}

/// COMMAND COUNT.
pub fn count(out: &mut Vec<u8>) {
    reply::integer(out, entries().len() as i64);
}

/// COMMAND INFO of `names` (nil for one not served), or of every command when none.
pub fn info<'a>(out: &mut Vec<u8>, names: impl ExactSizeIterator<Item = &'a [u8]>) {
    if names.len() == 0 {
        reply::array(out, entries().len());
        for entry in entries() {
            out.extend_from_slice(entry.info);
        }
        return;
    }
    reply::array(out, names.len());
    for name in names {
        match find(name) {
            Some(entry) => out.extend_from_slice(entry.info),
            None => out.extend_from_slice(reply::NULL),
        }
    }
}

/// COMMAND DOCS of `names` (those not served are left out), or of every command.
pub fn docs<'a>(out: &mut Vec<u8>, names: impl ExactSizeIterator<Item = &'a [u8]>) {
    let all = names.len() == 0;
    let chosen: Vec<&Entry> = if all { entries().iter().collect() } else { names.filter_map(find).collect() };
    reply::array(out, chosen.len() * 2);
    for entry in chosen {
        reply::bulk(out, entry.name.as_bytes());
        out.extend_from_slice(entry.docs);
    }
}

/// COMMAND LIST: every name.
pub fn list(out: &mut Vec<u8>) {
    reply::array(out, entries().len());
    for entry in entries() {
        reply::bulk(out, entry.name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_table_covers_what_is_served() {
        let names: Vec<&str> = entries().iter().map(|entry| entry.name.as_str()).collect();
        for name in crate::apps::kv::syntax::COMMANDS.iter().chain(crate::apps::server::local::COMMANDS) {
            assert!(names.contains(name), "{name} has no COMMAND entry");
        }
        let mut out = Vec::new();
        docs(&mut out, [&b"GET"[..], b"nosuch"].into_iter());
        assert!(out.starts_with(b"*2\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary\r\n"));
        out.clear();
        info(&mut out, [&b"nosuch"[..]].into_iter());
        assert_eq!(out, b"*1\r\n$-1\r\n");
    }
}
