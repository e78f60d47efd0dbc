//! Zero-copy fast path for the common reading stanza, because a general DOM parse costs more
//! than the whole ingest budget (parse + aggregate + detect at ≥ 500k readings/s).
//!
//! It accepts only a strict, boring subset of XML: printable ASCII plus tab/CR/LF, no
//! prologue, comments, CDATA, processing instructions, entity or character references,
//! prefixes, duplicate attributes or whitespace inside attribute values; at most
//! [`MAX_NODES`] elements and [`MAX_ATTRS`] attributes; nesting within the depth limit.
//! For anything else [`parse`] returns `None` and the caller falls back to minidom, which
//! then decides (and names the error). Within the subset the tree it yields is the one
//! minidom would build, which the tests check on many generated inputs.

use super::node::XmlNode;

/// Most elements the fast path holds; a reading stanza has six or seven.
pub(crate) const MAX_NODES: usize = 16;
/// Most attributes (over all elements) the fast path holds; a reading stanza has about fifteen.
pub(crate) const MAX_ATTRS: usize = 40;

const NONE: u8 = u8::MAX;

/// One element of the flat tree; links are indices into [`Doc::nodes`].
#[derive(Clone, Copy, Default)]
struct RawNode<'a> {
    name: &'a str,
    ns: &'a str,
    attrs_start: u8,
    attrs_end: u8,
    first_child: u8,
    last_child: u8,
    next_sibling: u8,
}

/// A parsed stanza borrowing the input; lives on the stack, no allocation.
pub(crate) struct Doc<'a> {
    nodes: [RawNode<'a>; MAX_NODES],
    attrs: [(&'a str, &'a str); MAX_ATTRS],
}

impl<'a> Doc<'a> {
    /// The root element.
    pub(crate) fn root(&self) -> FastNode<'_, 'a> {
        FastNode { doc: self, idx: 0 }
    }
}

/// A handle to one element of a [`Doc`].
#[derive(Clone, Copy)]
pub(crate) struct FastNode<'d, 'a> {
    doc: &'d Doc<'a>,
    idx: u8,
}

impl<'d, 'a> FastNode<'d, 'a> {
    fn raw(self) -> &'d RawNode<'a> {
        &self.doc.nodes[usize::from(self.idx)]
    }
}

impl<'d, 'a: 'd> XmlNode<'d> for FastNode<'d, 'a> {
    fn name(self) -> &'d str {
        self.raw().name
    }

    fn in_ns(self, ns: &str) -> bool {
        self.raw().ns == ns
    }

    fn ns_string(self) -> String {
        self.raw().ns.to_owned()
    }

    fn attr(self, name: &str) -> Option<&'d str> {
        self.attrs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn attrs(self) -> impl Iterator<Item = (&'d str, &'d str)> {
        let raw = self.raw();
        self.doc.attrs[usize::from(raw.attrs_start)..usize::from(raw.attrs_end)]
            .iter()
            .copied()
    }

    fn children(self) -> impl Iterator<Item = Self> {
        let doc = self.doc;
        let mut next = self.raw().first_child;
        std::iter::from_fn(move || {
            if next == NONE {
                return None;
            }
            let node = FastNode { doc, idx: next };
            next = node.raw().next_sibling;
            Some(node)
        })
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// A cursor over the input; every method returns `None` to mean "not in the fast subset".
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.pos += 1)
    }

    /// An NCName (ASCII only, no colon).
    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !is_name_start(self.peek()?) {
            return None;
        }
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        self.s.get(start..self.pos)
    }

    /// A quoted attribute value with nothing that XML would transform or forbid.
    fn value(&mut self) -> Option<&'a str> {
        let quote = self.peek()?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek()? {
                b if b == quote => break,
                b'<' | b'&' | b'\t' | b'\n' | b'\r' => return None,
                _ => self.pos += 1,
            }
        }
        let v = self.s.get(start..self.pos)?;
        self.pos += 1;
        Some(v)
    }

    /// Skips character data up to the next `<`; refused if XML would transform or forbid it.
    fn text(&mut self) -> Option<()> {
        while let Some(b) = self.peek() {
            match b {
                b'<' => break,
                b'&' => return None,
                // The byte before any text is the `>` of a tag, so `]]` lies inside the text.
                b'>' if self.s.as_bytes().get(self.pos.saturating_sub(2)..self.pos)
                    == Some(b"]]") =>
                {
                    return None;
                }
                _ => self.pos += 1,
            }
        }
        Some(())
    }
}

/// Parses `bytes` if they fall in the fast subset; `None` means "ask minidom".
pub(crate) fn parse(bytes: &[u8], max_depth: usize) -> Option<Doc<'_>> {
    if !bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return None;
    }
    let s = std::str::from_utf8(bytes).ok()?;
    let mut doc = Doc {
        nodes: [RawNode::default(); MAX_NODES],
        attrs: [("", ""); MAX_ATTRS],
    };
    let mut n_nodes = 0usize;
    let mut n_attrs = 0usize;
    // Open elements, innermost last.
    let mut stack = [0u8; MAX_NODES];
    let mut depth = 0usize;
    // No leading whitespace: minidom refuses text before the root element.
    let mut c = Cursor { s, pos: 0 };
    loop {
        if depth == 0 && n_nodes > 0 {
            // Root closed: only whitespace may follow.
            c.skip_space();
            return (c.peek().is_none()).then_some(doc);
        }
        c.eat(b'<')?;
        if c.eat(b'/').is_some() {
            let name = c.name()?;
            c.skip_space();
            c.eat(b'>')?;
            depth = depth.checked_sub(1)?;
            if doc.nodes[usize::from(stack[depth])].name != name {
                return None;
            }
        } else {
            if n_nodes == MAX_NODES || depth >= max_depth {
                return None;
            }
            let name = c.name()?;
            let attrs_start = n_attrs;
            let mut ns = None;
            let self_closing = loop {
                let spaced = c.skip_space();
                if c.eat(b'>').is_some() {
                    break false;
                }
                if c.eat(b'/').is_some() {
                    c.eat(b'>')?;
                    break true;
                }
                if !spaced {
                    return None;
                }
                let attr = c.name()?;
                c.skip_space();
                c.eat(b'=')?;
                c.skip_space();
                let value = c.value()?;
                if attr == "xmlns" {
                    if ns.is_some() || value.is_empty() {
                        return None;
                    }
                    ns = Some(value);
                } else {
                    if n_attrs == MAX_ATTRS
                        || doc.attrs[attrs_start..n_attrs]
                            .iter()
                            .any(|(n, _)| *n == attr)
                    {
                        return None;
                    }
                    doc.attrs[n_attrs] = (attr, value);
                    n_attrs += 1;
                }
            };
            let parent = depth.checked_sub(1).map(|d| stack[d]);
            let ns = match (ns, parent) {
                (Some(ns), _) => ns,
                (None, Some(p)) => doc.nodes[usize::from(p)].ns,
                (None, None) => return None,
            };
            // Both fit in u8: MAX_NODES and MAX_ATTRS are far below 255.
            let idx = n_nodes as u8;
            doc.nodes[n_nodes] = RawNode {
                name,
                ns,
                attrs_start: attrs_start as u8,
                attrs_end: n_attrs as u8,
                first_child: NONE,
                last_child: NONE,
                next_sibling: NONE,
            };
            n_nodes += 1;
            if let Some(p) = parent.map(usize::from) {
                match doc.nodes[p].last_child {
                    NONE => doc.nodes[p].first_child = idx,
                    last => doc.nodes[usize::from(last)].next_sibling = idx,
                }
                doc.nodes[p].last_child = idx;
            }
            if !self_closing {
                stack[depth] = idx;
                depth += 1;
            }
        }
        if depth > 0 {
            c.text()?;
        }
    }
}
