//! Progress bars for long commands: drawn on a terminal, hidden when output goes to a pipe or
//! file, so scripts and CI logs get only results.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` steps drawn with `template` (indicatif's syntax) on stderr, or a hidden one
/// unless both stdout and stderr are terminals.
pub fn bar(len: u64, template: &str) -> anyhow::Result<ProgressBar> {
    let on_terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    bar_for(on_terminal, len, template)
}

fn bar_for(on_terminal: bool, len: u64, template: &str) -> anyhow::Result<ProgressBar> {
    if !on_terminal {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    Ok(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_off_a_terminal_and_styled_on_one() {
        let piped = bar_for(false, 10, "[{bar:10}] {pos}/{len}").unwrap();
        assert!(piped.is_hidden());
        piped.set_position(4);
        assert_eq!(piped.position(), 4, "a hidden bar still counts");
        let drawn = bar_for(true, 10, "[{bar:10}] {pos}/{len}").unwrap();
        assert_eq!(drawn.length(), Some(10));
    }
}
