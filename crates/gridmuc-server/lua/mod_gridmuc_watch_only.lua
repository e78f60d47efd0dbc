-- Watch only: the live page's visitors may join a room and read it, never speak in it.
--
-- Loaded on the anonymous login host of the live page (see src/config.rs). Every login there
-- is a fresh account, so one visitor could open fifty sessions, join under fifty nicknames
-- and post readings (or private-mode reports) that the bot would count as fifty houses: the
-- one-occupant-per-account rule cannot hold where accounts cost nothing. The page sends no
-- message and asks no occupant anything, so refusing both costs it nothing:
--   * any message, to anyone (a groupchat reading, a private message to the bot or a
--     meter), is answered `forbidden`;
--   * iq requests (get, set) to a full JID, i.e. to an occupant through the room or to
--     another client (a meter's XEP-0323 readout, say), are answered `forbidden`.
-- What the page needs goes on: presence (the join), iq to its own server and to the room's
-- bare JID, and answers (result, error) to iqs sent to it.

local st = require "util.stanza";

local REASON = "visitors of the live page can watch the room, not post in it";

local function refuse(event)
	local origin, stanza = event.origin, event.stanza;
	if origin.type ~= "c2s" then
		return;
	end
	local t = stanza.attr.type;
	if t ~= "error" and not (stanza.name == "iq" and t == "result") then
		origin.send(st.error_reply(stanza, "auth", "forbidden", REASON));
	end
	module:log("debug", "refused a visitor's %s", stanza.name);
	return true;
end

for _, to in ipairs({ "bare", "full", "host" }) do
	module:hook("pre-message/" .. to, refuse, 1000);
end

module:hook("pre-iq/full", function (event)
	local t = event.stanza.attr.type;
	if t == "get" or t == "set" then
		return refuse(event);
	end
end, 1000);
