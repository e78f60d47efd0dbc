//! Neighbourhood → district: a neighbourhood bot feeds its interval totals (never per-house
//! data) into a district room, where an ordinary substation bot aggregates the neighbourhoods.
//!
//! To the district bot a neighbourhood is just an occupant sending XEP-0323 readings, so the
//! district runs the very same aggregator and detectors (total, spread across neighbourhoods,
//! overload of the primary substation, one neighbourhood far above its peers). Totals travel
//! with the same outbox and receipts as house readings, so a restart loses none.

use crate::bot::BotError;
use crate::delivery;
use crate::muc::{self, MucError};
use crate::session::Session;
use gridmuc_core::{IntervalStats, Outbox, OutboxConfig, Quality, Reading, ReadingId, RoomNick};
use rand::Rng;
use std::time::Duration;
use tokio_xmpp::jid::{BareJid, FullJid};
use xmpp_parsers::message::{Message, MessageType};

/// Where a neighbourhood bot publishes its totals; the `[district]` table of the bot's TOML.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistrictConfig {
    /// Bare JID of the district room.
    pub room: String,
    /// This neighbourhood's nickname there; a neighbourhood is not a household, so it may be stable.
    pub nick: String,
    /// The district bot's nickname, which the totals are sent to (direct mode).
    #[serde(default = "default_bot_nick")]
    pub bot_nick: String,
    /// What is kept until the district bot acknowledges it.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Totals of fewer meters are not published: a "total" of one house is that house's reading.
    #[serde(default = "default_min_meters")]
    pub min_meters: usize,
}

fn default_bot_nick() -> String {
    "district".to_owned()
}
fn default_min_meters() -> usize {
    5
}

/// The sending side of the district link, owned by the neighbourhood bot's task.
pub(crate) struct Uplink {
    pub(crate) room: BareJid,
    pub(crate) nick: RoomNick,
    bot: FullJid,
    outbox: Outbox,
    seqnr: u64,
    min_meters: usize,
}

impl Uplink {
    /// Checks the configuration; nothing is sent until [`Uplink::queue`].
    pub(crate) fn new(cfg: DistrictConfig) -> Result<Uplink, BotError> {
        // A mistake in the config, not a refusal by a room.
        let bad = |what: &'static str, e: String| BotError::BadSetting(what, e);
        let room = BareJid::new(&cfg.room).map_err(|e| bad("district.room", e.to_string()))?;
        let nick =
            RoomNick::new(cfg.nick.as_str()).map_err(|e| bad("district.nick", e.to_string()))?;
        let bot_nick = RoomNick::new(cfg.bot_nick.as_str())
            .map_err(|e| bad("district.bot_nick", e.to_string()))?;
        let bot =
            muc::occupant(&room, &bot_nick).map_err(|e| bad("district.bot_nick", e.to_string()))?;
        Ok(Uplink {
            room,
            nick,
            bot,
            outbox: Outbox::new(cfg.outbox),
            min_meters: cfg.min_meters.max(1),
            seqnr: rand::rng().random_range(0..u64::from(u32::MAX)),
        })
    }

    /// Queues an interval's total: first closes only (a revision would count twice), and only
    /// with at least `min_meters` behind it.
    pub(crate) fn queue(&mut self, stats: &IntervalStats) {
        if stats.revision != 0 || stats.meters < self.min_meters {
            if stats.meters > 0 && stats.revision == 0 {
                tracing::debug!(meters = stats.meters, "too few meters to publish a total");
            }
            return;
        }
        let reading = Reading {
            power: stats.total,
            at: stats.start,
            seqnr: 0,
            quality: Quality::AUTOMATIC_READOUT,
        };
        self.outbox
            .push(ReadingId::random(&mut rand::rng()), reading);
    }

    /// Sends what is due to the district bot.
    pub(crate) async fn flush(
        &mut self,
        client: &mut Session,
        now: gridmuc_core::Timestamp,
        bound: Duration,
    ) -> Result<(), MucError> {
        for out in self.outbox.due(now, usize::MAX) {
            let reading = Reading {
                seqnr: self.seqnr,
                ..out.reading
            };
            self.seqnr += 1;
            let m = delivery::reading_message(
                self.bot.clone().into(),
                MessageType::Chat,
                out.id,
                &reading,
            );
            muc::send(client, m.into(), bound).await?;
        }
        Ok(())
    }

    /// True if `m` was the district bot's receipt for one of our totals (or its bounce).
    pub(crate) fn on_message(&mut self, m: &Message) -> bool {
        if let Some(answer) = delivery::answer_from(m, &self.bot, None) {
            if let delivery::Answer::Verdicts(verdicts) = answer {
                for (id, verdict) in verdicts {
                    if let delivery::Verdict::Refused(reason) = verdict {
                        tracing::warn!(%reason, "the district bot refused a neighbourhood total");
                    }
                    self.outbox.acknowledge(id);
                }
            }
            return true;
        }
        let bounced =
            m.type_ == MessageType::Error && m.from.as_ref().is_some_and(|f| *f == self.bot);
        if bounced && let Some(id) = delivery::reading_id(m) {
            self.outbox.retry(id);
        }
        bounced
    }

    /// After a fresh session: everything unacknowledged goes out again.
    pub(crate) fn resend_all(&mut self) {
        self.outbox.resend_all();
    }

    /// Totals not yet acknowledged.
    pub(crate) fn pending(&self) -> usize {
        self.outbox.len()
    }
}
