//! `gridmuc bench ingest`: how many reading stanzas one core can parse, aggregate and run
//! detectors on, through the path the bot runs: the stanza parsed into a message (as tokio-xmpp
//! hands it over), then [`gridmuc_xmpp::bot::decode_reading`] (guard marks, sealed or plain
//! payload), then the aggregator.

use anyhow::{Context, bail};
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::codec::{CodecLimits, MessageKind, encode_message};
use gridmuc_core::{
    Aggregator, AggregatorConfig, Ingest, NickGenerator, Quality, Reading, ReadingId, RoomNick,
    Timestamp, Watts,
};
use gridmuc_xmpp::bot::decode_reading;
use gridmuc_xmpp::delivery;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::time::Instant;
use xmpp_parsers::message::Message;

/// Arguments of `gridmuc bench ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// Stanzas to ingest in the timed run.
    #[arg(long, default_value_t = 2_000_000)]
    readings: usize,
    /// Distinct nicknames (houses) sending one reading per interval.
    #[arg(long, default_value_t = 1_000)]
    houses: usize,
    /// Seed for the synthetic readings, so runs are comparable.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Direct readings sealed to the bot's key (what meters that pin it send), instead of plain
    /// XEP-0323 readings as in broadcast mode.
    #[arg(long)]
    sealed: bool,
}

/// What the bot does with one stanza's bytes up to the reading: parse (a stand-in for
/// tokio-xmpp's parser, which also builds the message's payload elements), then its decode.
fn bot_decode(
    bytes: &[u8],
    key: Option<&BotSecretKey>,
    limits: &CodecLimits,
) -> anyhow::Result<Reading> {
    let el = minidom::Element::from_reader(bytes).context("parsing a stanza")?;
    let m = Message::try_from(el).context("a stanza that is not a message")?;
    match decode_reading(&m, delivery::reading_id(&m), key, limits) {
        Some(Ok(reading)) => Ok(reading),
        Some(Err(rejection)) => bail!("refused: {rejection}"),
        None => bail!("no reading in the stanza"),
    }
}

/// One pre-built stanza and the room nickname its `from` would carry.
struct Prepared {
    stanza: Vec<u8>,
    nick: String,
}

/// Runs the benchmark and prints `ingest: <N> readings/s` as the last line.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.houses == 0 || args.readings == 0 {
        bail!("--houses and --readings must be positive");
    }
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let nicks: Vec<RoomNick> = (0..args.houses)
        .map(|_| NickGenerator.generate(&mut rng))
        .collect();
    let config = AggregatorConfig::default();
    let interval = config.interval;
    let limits = CodecLimits::default();
    let key = args
        .sealed
        .then(|| BotSecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(args.seed)));
    // A pool of distinct stanzas (one round of all houses per interval, 16 rounds) reused cyclically,
    // so the timed loop measures ingest and not stanza generation.
    let rounds = 16.min(args.readings.div_ceil(args.houses)).max(1);
    let mut pool = Vec::with_capacity(rounds * args.houses);
    for round in 0..rounds {
        for nick in &nicks {
            let reading = Reading {
                power: Watts(rng.random_range(0..6_000)).quantise(limits.quantum_watts),
                at: Timestamp(round as i64 * interval),
                seqnr: rng.random(),
                quality: Quality::AUTOMATIC_READOUT,
            };
            let el = match &key {
                Some(key) => {
                    let to = "neighbourhood@rooms.grid.test/substation".parse()?;
                    let id = ReadingId::random(&mut rng);
                    let m =
                        delivery::sealed_reading_message(to, id, &reading, &key.public(), &mut rng);
                    minidom::Element::from(m)
                }
                None => encode_message(
                    &reading,
                    "neighbourhood@rooms.grid.test",
                    MessageKind::Groupchat,
                    &format!("r{}", rng.random::<u32>()),
                ),
            };
            let mut stanza = Vec::new();
            el.write_to(&mut stanza).context("serialising a stanza")?;
            pool.push(Prepared {
                stanza,
                nick: nick.to_string(),
            });
        }
    }
    let avg_len = pool.iter().map(|p| p.stanza.len()).sum::<usize>() / pool.len();
    eprintln!(
        "bench ingest: {} {} readings from {} houses, {}-byte stanzas on average, one thread, the bot's decode path",
        args.readings,
        if args.sealed {
            "sealed direct"
        } else {
            "plain"
        },
        args.houses,
        avg_len
    );

    let time_decode = || -> anyhow::Result<f64> {
        let start = Instant::now();
        for i in 0..args.readings {
            let p = &pool[i % pool.len()];
            std::hint::black_box(bot_decode(&p.stanza, key.as_ref(), &limits)?);
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let decode_secs = time_decode()?;

    let mut agg = Aggregator::new(config);
    let start = Instant::now();
    let mut accepted = 0u64;
    for i in 0..args.readings {
        let p = &pool[i % pool.len()];
        let epoch = (i / pool.len()) as i64 * rounds as i64 * interval;
        let mut reading = bot_decode(&p.stanza, key.as_ref(), &limits)?;
        reading.at = reading.at.plus(epoch);
        reading.seqnr = i as u64;
        let nick = RoomNick::new(p.nick.as_str())?;
        let now = reading.at.plus(1_000);
        if agg.handle_reading(now, &nick, reading) == Ingest::Accepted {
            accepted += 1;
        }
        if (i + 1) % args.houses == 0 {
            agg.handle_timeout(reading.at.plus(interval + agg.config().grace));
            agg.poll_summaries().for_each(drop);
            agg.poll_alerts().for_each(drop);
        }
    }
    agg.flush();
    let full_secs = start.elapsed().as_secs_f64();
    if accepted != args.readings as u64 {
        bail!(
            "only {accepted} of {} readings accepted ({})",
            args.readings,
            agg.counters().rejected
        );
    }
    let decode_rate = args.readings as f64 / decode_secs;
    let rate = args.readings as f64 / full_secs;
    eprintln!(
        "decode only: {:.0} readings/s ({:.0} ns each); decode+aggregate+detect: {:.0} ns each; {} intervals closed; decode is {:.0}% of the time",
        decode_rate,
        1e9 / decode_rate,
        1e9 / rate,
        agg.counters().intervals,
        100.0 * decode_secs / full_secs
    );
    println!("ingest: {rate:.0} readings/s");
    Ok(())
}
