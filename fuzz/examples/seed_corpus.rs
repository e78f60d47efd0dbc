//! Writes seed stanzas for `stanza_to_reading` into the directory given as the only argument,
//! so the fuzzer starts from what meters really send instead of from empty input.
//!
//! Seeds: the codec's own encoder over a spread of powers, exports, quality flags and message
//! kinds, DESIGN.md's indented example, and XEP-0323's section 3 payloads wrapped in a message.

use gridmuc_core::codec::{MessageKind, encode_message};
use gridmuc_core::{Quality, Reading, Timestamp, Watts};
use std::path::{Path, PathBuf};

const ROOM: &str = "neighbourhood@rooms.grid.example";

/// DESIGN.md's wire-format example, as people indent it.
const DESIGN_MESSAGE: &str = include_str!("../../crates/gridmuc-core/testdata/design-message.xml");

/// XEP-0323 (v0.6) section 3 payloads: momentary values, energy + power, and history.
const XEP_PAYLOADS: [&str; 3] = [
    "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='true'><node nodeId='Device01'>\
     <timestamp value='2013-03-07T16:24:30'><numeric name='Temperature' momentary='true' \
     automaticReadout='true' value='23.4' unit='°C'/></timestamp></node></fields>",
    "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='6' done='true'><node nodeId='Device04'>\
     <timestamp value='2013-03-07T22:03:15'><numeric name='Energy' momentary='true' \
     automaticReadout='true' value='12345.67' unit='MWh'/><numeric name='Power' momentary='true' \
     automaticReadout='true' value='239.4' unit='W'/></timestamp></node></fields>",
    "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='4'><node nodeId='Device01'>\
     <timestamp value='2013-03-07T18:00:00'><numeric name='Temperature' historicalHour='true' \
     automaticReadout='true' value='24.5' unit='°C'/></timestamp><timestamp \
     value='2013-03-07T17:00:00'><numeric name='Temperature' historicalHour='true' \
     automaticReadout='true' value='25.1' unit='°C'/></timestamp></node></fields>",
];

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seed_corpus <corpus-dir>");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    let powers = [0, 10, 1_840, -350, 24_990, -25_000];
    let qualities = [
        Quality::AUTOMATIC_READOUT,
        Quality(Quality::AUTOMATIC_ESTIMATE.0 | Quality::WARNING.0),
        Quality::default(),
    ];
    let kinds = [MessageKind::Groupchat, MessageKind::Chat];
    let mut n = 0;
    for (i, &w) in powers.iter().enumerate() {
        for (j, &quality) in qualities.iter().enumerate() {
            let reading = Reading {
                power: Watts(w),
                at: Timestamp(1_795_550_400_000 + 60_000 * i as i64),
                seqnr: 4_000_000_000 + (i * 7 + j) as u64,
                quality,
            };
            let kind = kinds[(i + j) % kinds.len()];
            let to = match kind {
                MessageKind::Groupchat => ROOM.to_owned(),
                MessageKind::Chat => format!("{ROOM}/bot"),
            };
            let stanza = String::from(&encode_message(&reading, &to, kind, &format!("r-{n}")));
            write(&dir, &mut n, &stanza)?;
        }
    }
    write(&dir, &mut n, DESIGN_MESSAGE)?;
    for payload in XEP_PAYLOADS {
        let stanza = format!(
            "<message xmlns='jabber:client' type='chat' to='{ROOM}/bot' id='x'>{payload}</message>"
        );
        write(&dir, &mut n, &stanza)?;
    }
    println!("wrote {n} seeds to {}", dir.display());
    Ok(())
}

fn write(dir: &Path, n: &mut usize, stanza: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(format!("seed-{n:03}.xml")), stanza)?;
    *n += 1;
    Ok(())
}
