//! A client for Prosody's admin socket (`mod_admin_socket`), the protocol `prosodyctl shell`
//! speaks: an XML stream of `<repl-input>` lines answered by `<repl-result>`.
//!
//! Talking to the socket directly runs Lua inside the live server in milliseconds, where
//! spawning `prosodyctl shell` costs a Lua start-up per call.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::ServerError;

const STREAM_OPEN: &str = "<?xml version='1.0'?><stream:stream xmlns='xmpp:prosody.im/admin' \
     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// How long one command may take before we give up on the server.
const TIMEOUT: Duration = Duration::from_secs(20);

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The outcome of one `<repl-result>`: whether Prosody flagged it as an error, and its text.
fn parse_result(buffer: &str) -> Option<(bool, String)> {
    let start = buffer.find("<repl-result")?;
    let rest = &buffer[start..];
    let tag_end = rest.find('>')?;
    let tag = &rest[..tag_end];
    let is_error = tag.contains("type='error'") || tag.contains("type=\"error\"");
    if tag.ends_with('/') {
        return Some((is_error, String::new()));
    }
    let body = &rest[tag_end + 1..];
    let close = body.find("</repl-result>")?;
    Some((is_error, unescape(&body[..close])))
}

/// Runs `lua` (a chunk in Prosody's global environment) in the server behind `socket`
/// and returns the text of its result, e.g. `Result: ok`.
pub(crate) fn run_lua(socket: &Path, lua: &str) -> Result<String, ServerError> {
    let failed = |detail: String| ServerError::AdminShell(detail);
    let io = |e: std::io::Error| failed(format!("admin socket {}: {e}", socket.display()));
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!("{STREAM_OPEN}<repl-input>&gt;{}</repl-input>", escape(lua));
    stream.write_all(request.as_bytes()).map_err(io)?;

    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(failed(format!(
                "server closed the admin stream without a result: {}",
                String::from_utf8_lossy(&received)
            )));
        }
        received.extend_from_slice(&chunk[..n]);
        if let Some((is_error, text)) = parse_result(&String::from_utf8_lossy(&received)) {
            let _ = stream.write_all(b"</stream:stream>");
            return if is_error {
                Err(failed(text))
            } else {
                Ok(text)
            };
        }
    }
}

/// Quotes `text` as a Lua string literal, whatever it contains.
pub(crate) fn lua_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for b in text.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_results() {
        assert_eq!(
            parse_result(
                "<stream:stream><repl-result type='error'>Error: a &lt;b&gt;</repl-result>"
            ),
            Some((true, "Error: a <b>".to_owned()))
        );
        assert_eq!(parse_result("<repl-result/>"), Some((false, String::new())));
        assert_eq!(parse_result("<repl-result>Result: o"), None);
    }

    #[test]
    fn quotes_lua_strings() {
        assert_eq!(lua_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\010\"");
    }
}
