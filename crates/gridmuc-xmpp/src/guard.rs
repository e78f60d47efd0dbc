//! Bounds every incoming stanza *before* an XML tree is built from it.
//!
//! tokio-xmpp builds each stanza into a minidom tree recursively and drops it recursively, so
//! a stanza nested a few thousand levels deep (35 KB, well under a server's 256 KiB limit)
//! overflows a tokio worker's stack and aborts the whole process; Prosody does not bound
//! nesting. No maintained crate filters an XMPP byte stream by depth, so this module scans the
//! bytes of the session (after TLS) the way mini-redis's `Frame::check` does before parsing:
//!
//! - elements deeper than [`MAX_STANZA_DEPTH`] below a stanza are cut out whole (start tag,
//!   content, end tag), so the stream stays well-formed and the stanza still arrives;
//! - a stanza that was cut, or that is bigger than [`ANNOTATE_OVER_BYTES`] on the wire, gets a
//!   [`NS_GUARD`] `<guard/>` child with what was seen, so the agent refuses and counts it.
//!
//! The scan is linear, keeps a few bytes of state and never allocates per element. It relies
//! on what a server sends: no CDATA, comments or DTDs inside stanzas (RFC 6120 §11.1; Prosody
//! re-serialises everything it routes).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Namespace of the marker the guard adds to a stanza it cut or found oversized.
pub const NS_GUARD: &str = "urn:gridmuc:guard:0";
/// Deepest element nesting kept below a stanza; no XMPP payload we know of comes close.
pub const MAX_STANZA_DEPTH: usize = 48;
/// Stanzas bigger than this on the wire are annotated with their size (readings must stay below).
pub const ANNOTATE_OVER_BYTES: usize = 4096;

/// What the guard saw about one stanza, as carried by its `<guard/>` marker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardMark {
    /// Elements were cut because they nested deeper than [`MAX_STANZA_DEPTH`].
    pub too_deep: bool,
    /// The stanza's size on the wire, if over [`ANNOTATE_OVER_BYTES`].
    pub bytes: Option<usize>,
}

impl GuardMark {
    /// The marker on a received stanza, if the guard left one.
    pub fn find(payloads: &[minidom::Element]) -> Option<GuardMark> {
        let el = payloads.iter().find(|e| e.is("guard", NS_GUARD))?;
        Some(GuardMark {
            too_deep: el.attr("elided").is_some(),
            bytes: el.attr("bytes").and_then(|b| b.parse().ok()),
        })
    }
}

/// Stanzas that had elements cut for depth, over every guarded session of this process.
pub static CUT_TOO_DEEP: AtomicU64 = AtomicU64::new(0);

/// Where the scanner is inside the markup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Character data between tags.
    Text,
    /// Just after `<`: not yet known whether a start tag, end tag or declaration follows.
    Open,
    /// Inside a start tag's name.
    StartName,
    /// Inside a start tag after its name; `slash` if the last significant byte was `/`.
    StartAttrs { slash: bool },
    /// Inside a quoted attribute value of a start tag.
    Quoted(u8),
    /// Inside an end tag.
    End,
    /// Inside `<?…>` or `<!…>`.
    Decl,
}

/// The byte-level depth and size scanner: sans-IO, fed chunks in order.
#[derive(Debug)]
pub struct DepthLimiter {
    scan: Scan,
    /// Open elements, the stream header counting as one.
    depth: usize,
    /// Depth at which elements are being dropped (the dropped element's own depth).
    skip_from: Option<usize>,
    /// Whether the current start tag is dropped.
    tag_dropped: bool,
    /// The current start tag's name (first bytes only).
    name: Vec<u8>,
    /// Bytes of the current top-level stanza so far, and whether it is one we annotate.
    stanza_bytes: usize,
    stanza_is_stanza: bool,
    stanza_name_len: usize,
    stanza_cut: bool,
    max_depth: usize,
}

/// Stream header depth (1) plus the stanza itself (2) plus the allowed nesting.
const fn stream_depth(max_stanza_depth: usize) -> usize {
    max_stanza_depth + 2
}

impl Default for DepthLimiter {
    fn default() -> Self {
        DepthLimiter::new(MAX_STANZA_DEPTH)
    }
}

impl DepthLimiter {
    /// A scanner keeping at most `max_stanza_depth` levels below each stanza.
    pub fn new(max_stanza_depth: usize) -> DepthLimiter {
        DepthLimiter {
            scan: Scan::Text,
            depth: 0,
            skip_from: None,
            tag_dropped: false,
            name: Vec::with_capacity(16),
            stanza_bytes: 0,
            stanza_is_stanza: false,
            stanza_name_len: 0,
            stanza_cut: false,
            max_depth: stream_depth(max_stanza_depth),
        }
    }

    /// Scans `input`, appending what the parser may see to `out`; returns the stanzas cut for depth.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> u64 {
        let mut cut = 0;
        for &b in input {
            if self.depth >= 1 && (self.depth > 1 || self.scan != Scan::Text) {
                self.stanza_bytes += 1;
            }
            match self.scan {
                Scan::Text => {
                    if b == b'<' {
                        self.scan = Scan::Open;
                    } else if self.skip_from.is_none() {
                        out.push(b);
                    }
                }
                Scan::Open => match b {
                    b'/' => {
                        self.scan = Scan::End;
                        // The end of a stanza: its marker goes in before the end tag.
                        if self.depth == 2 && self.skip_from.is_none() {
                            self.mark(out);
                        }
                        if self.skip_from.is_none() {
                            out.extend_from_slice(b"</");
                        }
                    }
                    b'?' | b'!' => {
                        self.scan = Scan::Decl;
                        if self.skip_from.is_none() {
                            out.push(b'<');
                            out.push(b);
                        }
                    }
                    _ => {
                        self.scan = Scan::StartName;
                        self.name.clear();
                        self.name.push(b);
                        let depth = self.depth + 1;
                        if depth == 2 {
                            self.stanza_bytes = 2;
                            self.stanza_cut = false;
                        }
                        if self.skip_from.is_none() && depth > self.max_depth {
                            self.skip_from = Some(depth);
                            if !self.stanza_cut {
                                self.stanza_cut = true;
                                cut += 1;
                            }
                        }
                        self.tag_dropped = self.skip_from.is_some();
                        if !self.tag_dropped {
                            out.push(b'<');
                            out.push(b);
                        }
                    }
                },
                Scan::StartName | Scan::StartAttrs { .. } => {
                    if !self.tag_dropped {
                        out.push(b);
                    }
                    match b {
                        b'>' => {
                            let slash = matches!(self.scan, Scan::StartAttrs { slash: true })
                                || (self.scan == Scan::StartName
                                    && self.name.last() == Some(&b'/'));
                            self.start_tag_closed(slash);
                            self.scan = Scan::Text;
                        }
                        b'\'' | b'"' => self.scan = Scan::Quoted(b),
                        b' ' | b'\t' | b'\r' | b'\n' => {
                            self.scan = Scan::StartAttrs { slash: false };
                        }
                        _ => {
                            if self.scan == Scan::StartName {
                                if self.name.len() < 32 {
                                    self.name.push(b);
                                }
                            } else {
                                self.scan = Scan::StartAttrs { slash: b == b'/' };
                            }
                        }
                    }
                }
                Scan::Quoted(q) => {
                    if !self.tag_dropped {
                        out.push(b);
                    }
                    if b == q {
                        self.scan = Scan::StartAttrs { slash: false };
                    }
                }
                Scan::End => {
                    if self.skip_from.is_none() {
                        out.push(b);
                    }
                    if b == b'>' {
                        self.scan = Scan::Text;
                        if let Some(from) = self.skip_from
                            && self.depth == from
                        {
                            self.skip_from = None;
                        }
                        self.depth = self.depth.saturating_sub(1);
                    }
                }
                Scan::Decl => {
                    if self.skip_from.is_none() {
                        out.push(b);
                    }
                    if b == b'>' {
                        self.scan = Scan::Text;
                    }
                }
            }
        }
        cut
    }

    /// A start tag ended; `self_closing` if it was `<…/>`.
    fn start_tag_closed(&mut self, self_closing: bool) {
        let name = self.name.strip_suffix(b"/").unwrap_or(&self.name);
        // A stream restart (after STARTTLS or SASL) opens a new header without closing the old,
        // always at the top level; inside a stanza the same name is just a (hostile) element.
        if name == b"stream:stream" && self.depth <= 1 {
            self.depth = 1;
            self.skip_from = None;
            return;
        }
        if self.depth + 1 == 2 {
            self.stanza_is_stanza = matches!(name, b"message" | b"presence" | b"iq");
            self.stanza_name_len = name.len();
        }
        if !self_closing {
            self.depth += 1;
        }
    }

    /// Writes the `<guard/>` marker for the stanza now ending, if it was cut or is oversized.
    fn mark(&self, out: &mut Vec<u8>) {
        if !self.stanza_is_stanza {
            return;
        }
        let oversized = self.stanza_bytes > ANNOTATE_OVER_BYTES;
        if !self.stanza_cut && !oversized {
            return;
        }
        out.extend_from_slice(b"<guard xmlns='");
        out.extend_from_slice(NS_GUARD.as_bytes());
        out.push(b'\'');
        if self.stanza_cut {
            out.extend_from_slice(b" elided='depth'");
        }
        if oversized {
            // `</` is counted; the name and `>` of the end tag are still to come.
            let total = self.stanza_bytes + self.stanza_name_len + 1;
            out.extend_from_slice(format!(" bytes='{total}'").as_bytes());
        }
        out.extend_from_slice(b"/>");
    }
}

/// An `AsyncRead` that passes the session's bytes through a [`DepthLimiter`].
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    limiter: DepthLimiter,
    raw: Box<[u8]>,
    out: Vec<u8>,
    pos: usize,
}

impl<S> Guarded<S> {
    /// Guards `inner`, counting cut stanzas in [`CUT_TOO_DEEP`].
    pub fn new(inner: S) -> Guarded<S> {
        Guarded {
            inner,
            limiter: DepthLimiter::default(),
            raw: vec![0; 16 * 1024].into_boxed_slice(),
            out: Vec::with_capacity(16 * 1024),
            pos: 0,
        }
    }

    /// The guarded stream (for TLS details such as channel binding).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.out.len() {
                let n = (this.out.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            this.out.clear();
            this.pos = 0;
            let mut raw = ReadBuf::new(&mut this.raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw))?;
            let filled = raw.filled();
            if filled.is_empty() {
                // End of stream.
                return Poll::Ready(Ok(()));
            }
            let cut = this.limiter.feed(filled, &mut this.out);
            if cut > 0 {
                CUT_TOO_DEEP.fetch_add(cut, Ordering::Relaxed);
                tracing::warn!(
                    max_depth = MAX_STANZA_DEPTH,
                    "cut elements nested too deep out of an incoming stanza (refused)"
                );
            }
            // Everything read may have been cut: read again rather than report end of stream.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='x' from='grid.test'>";

    fn run(input: &str, chunk: usize) -> (String, u64) {
        let mut l = DepthLimiter::new(4);
        let mut out = Vec::new();
        let mut cut = 0;
        for c in input.as_bytes().chunks(chunk.max(1)) {
            cut += l.feed(c, &mut out);
        }
        (String::from_utf8(out).unwrap(), cut)
    }

    fn nested(levels: usize) -> String {
        format!(
            "<message from='r@m/n' type='groupchat'><x xmlns='urn:evil'>{}{}</x><body>hi</body></message>",
            "<a>".repeat(levels),
            "</a>".repeat(levels)
        )
    }

    #[test]
    fn shallow_stanzas_pass_unchanged_in_any_chunking() {
        let s = format!(
            "{HEADER}<message to='a@b' id='1'><body a='x&gt;y' b=\"q'>\">1 &lt; 2</body>\
             <fields xmlns='urn:xmpp:iot:sensordata'><node nodeId='m'/></fields></message>\
             <presence/><iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(run(&s, chunk), (s.clone(), 0), "chunk {chunk}");
        }
    }

    #[test]
    fn deep_elements_are_cut_whole_and_the_stanza_is_marked() {
        let s = format!(
            "{HEADER}{}<message id='2'><body>ok</body></message>",
            nested(30_000)
        );
        for chunk in [1, 5, 8192] {
            let (out, cut) = run(&s, chunk);
            assert_eq!(cut, 1);
            // The stanza keeps its first levels, its later siblings and a marker.
            let expected = format!(
                "{HEADER}<message from='r@m/n' type='groupchat'><x xmlns='urn:evil'><a><a><a></a></a></a></x>\
                 <body>hi</body><guard xmlns='{NS_GUARD}' elided='depth' bytes='{}'/></message>\
                 <message id='2'><body>ok</body></message>",
                nested(30_000).len()
            );
            assert_eq!(out, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn a_large_flat_stanza_is_annotated_with_its_wire_size() {
        let body = "x".repeat(60_000);
        let stanza = format!("<message id='3'><body>{body}</body></message>");
        let (out, cut) = run(&format!("{HEADER}{stanza}"), 1000);
        assert_eq!(cut, 0);
        assert!(out.ends_with(&format!(
            "<guard xmlns='{NS_GUARD}' bytes='{}'/></message>",
            stanza.len()
        )));
    }

    #[test]
    fn a_stream_restart_resets_the_depth() {
        let s = format!(
            "{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>{HEADER}{}",
            nested(3)
        );
        let (out, cut) = run(&s, 3);
        assert_eq!((out, cut), (s, 0));
    }

    #[test]
    fn a_stream_header_inside_a_stanza_does_not_reset_the_depth() {
        // Were it a reset, nesting the header name would never count as depth at all.
        let open = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
        let evil = format!(
            "<message id='e'>{}{}</message>",
            open.repeat(20),
            "</stream:stream>".repeat(20)
        );
        let (out, cut) = run(&format!("{HEADER}{evil}"), 7);
        assert_eq!(cut, 1);
        assert_eq!(out.matches("<stream:stream").count(), 1 + 4, "{out}");
    }

    #[test]
    fn the_marker_parses_back() {
        let el: minidom::Element = format!(
            "<message xmlns='jabber:client'><guard xmlns='{NS_GUARD}' elided='depth' bytes='70000'/></message>"
        )
        .parse()
        .unwrap();
        let payloads: Vec<_> = el.children().cloned().collect();
        assert_eq!(
            GuardMark::find(&payloads),
            Some(GuardMark {
                too_deep: true,
                bytes: Some(70_000)
            })
        );
    }

    proptest::proptest! {
        /// Whatever nesting arrives, the output never nests deeper than the limit and every
        /// element opened is closed (checked by minidom, which would otherwise fail).
        #[test]
        fn output_is_bounded_and_well_formed(depths in proptest::collection::vec(0usize..40, 1..8), chunk in 1usize..50) {
            let stanzas: String = depths.iter().map(|d| nested(*d)).collect();
            let (out, cut) = run(&format!("{HEADER}{stanzas}</stream:stream>"), chunk);
            let expected_cut = depths.iter().filter(|d| **d + 1 > 4).count() as u64;
            proptest::prop_assert_eq!(cut, expected_cut);
            let body = out.strip_prefix("<?xml version='1.0'?>").unwrap();
            let root: minidom::Element = body.parse().unwrap();
            fn depth(e: &minidom::Element) -> usize {
                1 + e.children().map(depth).max().unwrap_or(0)
            }
            for stanza in root.children() {
                proptest::prop_assert!(depth(stanza) <= 5);
            }
        }
    }
}
