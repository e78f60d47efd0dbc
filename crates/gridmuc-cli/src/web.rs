//! The live neighbourhood page (`web/page/`), built into the binary so `gridmuc demo` and
//! `gridmuc server` serve it from any directory and a fresh clone needs no network: the
//! browser libraries are vendored under `web/page/vendor/` by `scripts/web-vendor`.

use gridmuc_server::WebPage;

/// One file of `web/page/`, embedded.
macro_rules! page_file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../../web/page/", $name)).as_slice(),
        )
    };
}

/// The page's files as Prosody serves them (`index.html` at `/`).
pub fn page() -> WebPage {
    WebPage {
        files: vec![
            page_file!("index.html"),
            page_file!("app.js"),
            page_file!("style.css"),
            page_file!("vendor/xmpp.min.js"),
            page_file!("vendor/xmpp.LICENSE"),
            page_file!("vendor/uPlot.iife.min.js"),
            page_file!("vendor/uPlot.min.css"),
            page_file!("vendor/uPlot.LICENSE"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_vendored_files_are_what_scripts_web_vendor_wrote() {
        let sums = include_str!("../../../web/page/vendor/SHA256SUMS");
        let page = page();
        let mut checked = 0;
        for line in sums.lines() {
            let (hash, name) = line.split_once("  ").expect("sha256sum's format");
            let path = format!("vendor/{name}");
            let (_, bytes) = page
                .files
                .iter()
                .find(|(n, _)| *n == path)
                .unwrap_or_else(|| panic!("{path} is not served"));
            let actual: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                actual, hash,
                "{path} differs from what scripts/web-vendor wrote"
            );
            checked += 1;
        }
        assert_eq!(checked, 5);
    }

    #[test]
    fn every_file_the_page_loads_is_served() {
        let page = page();
        let index = std::str::from_utf8(page.files[0].1).expect("utf-8");
        let mut refs = 0;
        for attr in ["src=\"", "href=\""] {
            for part in index.split(attr).skip(1) {
                let target = part.split('"').next().expect("a closing quote");
                assert!(
                    page.files.iter().any(|(n, _)| *n == target),
                    "index.html loads {target}, which is not served"
                );
                refs += 1;
            }
        }
        assert_eq!(refs, 5, "three scripts and two style sheets");
    }
}
