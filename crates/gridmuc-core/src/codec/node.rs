//! One read-only view of an XML element, so the reading decoder is written once and runs
//! unchanged on a minidom tree and on the zero-copy fast path of [`super::fast`].

use minidom::Element;
use minidom::rxml::Namespace;

/// What the decoders need from an element: name, namespace, attributes and child elements.
pub(crate) trait XmlNode<'a>: Copy {
    /// Local name (no prefix).
    fn name(self) -> &'a str;
    /// True if the element's namespace is `ns` (no allocation on the hot path).
    fn in_ns(self, ns: &str) -> bool;
    /// The namespace as an owned string, only for error messages.
    fn ns_string(self) -> String;
    /// Value of an un-namespaced attribute.
    fn attr(self, name: &str) -> Option<&'a str>;
    /// All un-namespaced attributes, for quality flags.
    fn attrs(self) -> impl Iterator<Item = (&'a str, &'a str)>;
    /// Child elements in document order (text is skipped).
    fn children(self) -> impl Iterator<Item = Self>;
}

impl<'a> XmlNode<'a> for &'a Element {
    fn name(self) -> &'a str {
        Element::name(self)
    }

    fn in_ns(self, ns: &str) -> bool {
        self.has_ns(ns)
    }

    fn ns_string(self) -> String {
        self.ns()
    }

    fn attr(self, name: &str) -> Option<&'a str> {
        self.attrs()
            .get(Namespace::none(), name)
            .map(String::as_str)
    }

    fn attrs(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        Element::attrs(self)
            .iter()
            .filter(|((ns, _), _)| ns.is_none())
            .map(|((_, name), value)| (name.as_str(), value.as_str()))
    }

    fn children(self) -> impl Iterator<Item = Self> {
        Element::children(self)
    }
}

/// Result of [`measure`]: a cheap lower bound of the serialised size, and whether nesting stayed in bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Measure {
    /// Lower bound of the bytes this tree needs when serialised.
    pub bytes: usize,
    /// False if some element sits deeper than the depth limit (the walk stopped there).
    pub within_depth: bool,
}

/// Walks names, attributes and text (no serialisation) to bound a tree's wire size and depth.
///
/// The size is a lower bound of any serialisation (entities only grow text; namespace
/// declarations are counted where the parser recorded them), so a stanza that fit the byte
/// limit on the wire never fails this estimate. The walk never goes deeper than `max_depth + 1`.
pub(crate) fn measure(el: &Element, max_depth: usize) -> Measure {
    let mut m = Measure {
        bytes: 0,
        within_depth: true,
    };
    walk(el, 1, max_depth, &mut m);
    m
}

fn walk(el: &Element, depth: usize, max_depth: usize, m: &mut Measure) {
    if depth > max_depth {
        m.within_depth = false;
        return;
    }
    // `<name/>` at the least.
    m.bytes += el.name().len() + 3;
    for (prefix, ns) in el.prefixes.declared_prefixes() {
        // ` xmlns:prefix='ns'`
        m.bytes += 9 + prefix.as_ref().map_or(0, |p| p.len() + 1) + ns.len();
    }
    for ((_, name), value) in el.attrs().iter() {
        // ` name='value'`
        m.bytes += name.len() + value.len() + 4;
    }
    for text in el.texts() {
        m.bytes += text.len();
    }
    for child in el.children() {
        walk(child, depth + 1, max_depth, m);
        if !m.within_depth {
            return;
        }
    }
}
