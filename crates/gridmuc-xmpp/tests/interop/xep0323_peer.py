#!/usr/bin/python3
"""A third-party XEP-0323 peer on slixmpp (Debian's python3-slixmpp), for the interop tests in
readout_live.rs. slixmpp's own xep_0323 plugin does both sides; this script only logs in with
the test CA, joins the room under a nickname and drives the plugin.

  ask    JID PASSWORD HOST PORT CA ROOM NICK TARGET   asks the occupant TARGET for readouts
  device JID PASSWORD HOST PORT CA ROOM NICK WATTS    answers readouts with WATTS of Power

`ask` prints one JSON object (what disco#info and each request returned) and exits; `device`
prints `ready` once in the room and answers until stdin closes.
"""

import asyncio
import json
import sys

from slixmpp import ClientXMPP
from slixmpp.plugins.xep_0323.device import Device


class Peer(ClientXMPP):
    def __init__(self, jid, password, ca, room, nick):
        super().__init__(jid, password)
        self.ca_certs = ca
        self.room, self.nick = room, nick
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0323", {"threaded": False})
        self.joined = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.start)

    async def start(self, _event):
        self.send_presence()
        await self.plugin["xep_0045"].join_muc_wait(self.room, self.nick, maxstanzas=0, timeout=15)
        self.joined.set_result(True)


async def readout(peer, target, flags):
    """One request through the plugin: every callback it made, until done or rejected."""
    results = []
    finished = asyncio.get_event_loop().create_future()

    def callback(from_jid, result, nodeId=None, timestamp=None, fields=None, error_msg=None):
        results.append(
            {"result": result, "from": str(from_jid), "node": nodeId, "timestamp": timestamp,
             "fields": fields, "error": error_msg})
        if result in ("done", "rejected", "failure", "cancelled") and not finished.done():
            finished.set_result(True)

    peer.plugin["xep_0323"].request_data(peer.boundjid.full, target, callback, flags=flags)
    try:
        await asyncio.wait_for(finished, 10)
    except asyncio.TimeoutError:
        results.append({"result": "timeout"})
    return results


async def ask(peer, target):
    out = {}
    info = await peer.plugin["xep_0030"].get_info(jid=target, timeout=10)
    out["features"] = sorted(info["disco_info"]["features"])
    out["momentary"] = await readout(peer, target, {"momentary": "true"})
    out["historical"] = await readout(peer, target, {"historicalDay": "true"})
    print(json.dumps(out), flush=True)


class Meter(Device):
    """A plug that knows only its momentary power, stamped as slixmpp stamps it (local time,
    no zone)."""

    def __init__(self, watts):
        super().__init__("plug")
        self._add_field(name="Power", typename="numeric", unit="W")
        self.watts = watts

    def refresh(self, fields):
        self._add_field_momentary_data("Power", str(self.watts), flags={"automaticReadout": "true"})


async def main():
    mode, jid, password, host, port, ca, room, nick, arg = sys.argv[1:10]
    peer = Peer(jid, password, ca, room, nick)
    if mode == "device":
        peer.plugin["xep_0323"].register_node(nodeId="plug", device=Meter(int(arg)), commTimeout=10)
    peer.connect(address=(host, int(port)))
    await asyncio.wait_for(peer.joined, 20)
    if mode == "ask":
        await ask(peer, f"{room}/{arg}")
    else:
        print("ready", flush=True)
        await asyncio.get_event_loop().run_in_executor(None, sys.stdin.read)
    peer.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
