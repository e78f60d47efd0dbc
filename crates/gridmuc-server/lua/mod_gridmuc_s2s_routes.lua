-- Sends server-to-server connections for the configured domains to fixed loopback
-- addresses and ports instead of looking the domains up in DNS, so two private
-- instances federate without /etc/hosts, a DNS server or the well-known port 5269.
--
--   gridmuc_s2s_routes = { ["homes.test"] = { "127.0.0.3", 40123 }, … }
--
-- mod_s2s asks net.resolvers.service for the peer's _xmpp-server (STARTTLS) and, when
-- direct TLS is configured, _xmpps-server targets; for a routed domain we answer with
-- the one configured target (and no direct-TLS target). Everything after resolution,
-- TLS and certificate verification included, stays mod_s2s's own code.
module:set_global();

local service = require "net.resolvers.service";
local manual = require "net.resolvers.manual";

local routes = module:get_option("gridmuc_s2s_routes", {});
local dns_new = service.new;

function module.load()
	service.new = function (hostname, service_name, proto, extra)
		local route = routes[hostname];
		if not route then
			return dns_new(hostname, service_name, proto, extra);
		end
		if service_name ~= "xmpp-server" then
			return manual.new({}, proto, extra);
		end
		module:log("debug", "s2s to %s goes to %s port %d", hostname, route[1], route[2]);
		return manual.new({ { proto .. "4", route[1], route[2], extra } }, proto, extra);
	end;
end

function module.unload()
	service.new = dns_new;
end
