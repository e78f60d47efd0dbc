//! `gridmuc bench ingest`: how many reading stanzas one core can parse, aggregate and run detectors on.

use anyhow::{Context, bail};
use gridmuc_core::codec::{CodecLimits, MessageKind, decode_stanza, encode_message};
use gridmuc_core::{
    Aggregator, AggregatorConfig, Ingest, NickGenerator, Quality, Reading, RoomNick, Timestamp,
    Watts,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::time::Instant;

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
            let el = encode_message(
                &reading,
                "neighbourhood@rooms.grid.test",
                MessageKind::Groupchat,
                &format!("r{}", rng.random::<u32>()),
            );
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
        "bench ingest: {} readings from {} houses, {}-byte stanzas on average, one thread",
        args.readings, args.houses, avg_len
    );

    let time_decode = || -> anyhow::Result<f64> {
        let start = Instant::now();
        for i in 0..args.readings {
            let p = &pool[i % pool.len()];
            std::hint::black_box(decode_stanza(&p.stanza, &limits)?);
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
        let mut reading = decode_stanza(&p.stanza, &limits)?;
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
