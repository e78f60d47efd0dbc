-- One account, one occupant: an account (bare JID) holds at most one nickname in a room,
-- so one account cannot pose as fifty houses and fake an overload.
--
-- Loaded on our MUC components (see src/config.rs). Policy, newest wins:
--   * an account that holds occupant A and joins under another nickname B: A is removed
--     by the system (its sessions get the unavailable self-presence with status 307 and
--     the reason below), then B joins. A meter killed with -9, whose old session
--     hibernates (XEP-0198, up to 600 s) and keeps nickname A, can rejoin at once;
--   * the same account joining again under the SAME nickname from another session (a bot
--     replacing a stuck session) is one occupant with two sessions: allowed;
--   * leave then rejoin under a new nickname (rotation): the old occupant is already gone;
--   * a session already in the room that changes nickname while its account keeps other
--     sessions under the old one would split into two occupants: refused (not-acceptable).
--     Our clients never change nicknames (status 303 links old and new).
-- The kick is not broadcast beyond what mod_muc does for any kick: with our rooms'
-- presence broadcast limited to moderators, other participants learn nothing.
-- Reserved nicknames (XEP-0045 registration) are enforced by mod_muc itself
-- (muc/register.lib.lua answers <conflict/>), before this hook runs.
-- Real JIDs are logged at debug level only.

local jid_bare = require "util.jid".bare;
local jid_resource = require "util.jid".resource;
local st = require "util.stanza";

module:depends("muc");

local REASON = "replaced by a newer occupant of the same account";

-- Lowest priority of all pre-join hooks (mod_muc's own run at 2 … -10): every refusal
-- (ban, members-only, password, reserved nickname) has been decided before we evict.
local PRIORITY = -100;

-- Removes every occupant of `bare` in `room` except those whose in-room JID is in `keep`.
local function evict_others(room, bare, keep)
	local stale = {};
	for nick, occupant in room:each_occupant() do
		if occupant.bare_jid == bare and not keep[nick] then
			stale[#stale + 1] = nick;
		end
	end
	for _, nick in ipairs(stale) do
		module:log("debug", "%s: %s is replaced by a newer occupant of %s", room.jid, nick, bare);
		local ok, err_type, condition = room:set_role(true, nick, "none", REASON);
		if not ok then
			module:log("warn", "%s: could not remove an older occupant: %s %s", room.jid,
				tostring(err_type), tostring(condition));
		end
	end
	return #stale;
end

module:hook("muc-occupant-pre-join", function (event)
	local room, occupant = event.room, event.occupant;
	local bare = jid_bare(event.stanza.attr.from);
	-- A nickname held by another account: mod_muc answers <conflict/> after this event,
	-- and the joiner's current occupant must stay.
	if occupant.bare_jid ~= bare then
		return;
	end
	local evicted = evict_others(room, bare, { [occupant.nick] = true });
	if evicted > 0 then
		module:log("debug", "%s: %d older occupant(s) of %s removed before %s joins",
			room.jid, evicted, bare, jid_resource(occupant.nick));
	end
end, PRIORITY);

module:hook("muc-occupant-pre-change", function (event)
	local orig, dest = event.orig_occupant, event.dest_occupant;
	if orig.nick == dest.nick then
		return; -- a presence update, not a nickname change
	end
	local room, stanza = event.room, event.stanza;
	local bare = jid_bare(stanza.attr.from);
	if dest.bare_jid ~= bare then
		return; -- mod_muc answers <conflict/>
	end
	if not event.is_last_session then
		module:log("debug", "%s: refused a nickname change that would give %s two occupants",
			room.jid, bare);
		event.origin.send(st.error_reply(stanza, "cancel", "not-acceptable",
			"One account, one nickname: leave the room from every session before taking another nickname",
			room.jid));
		return true;
	end
	evict_others(room, bare, { [orig.nick] = true, [dest.nick] = true });
end, PRIORITY);
