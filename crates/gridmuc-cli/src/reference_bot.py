#!/usr/bin/python3
"""The reference bot of `gridmuc loadtest --reference slixmpp`: a minimal substation bot on
slixmpp (Debian's python3-slixmpp), the field's Python XMPP library, for a same-run comparison
of CPU per reading with ours (issue #16 measured ours against one like it).

  reference_bot.py JID PASSWORD HOST PORT CA ROOM NICK

It joins ROOM as a plain occupant, and for every groupchat reading it takes the XEP-0323
`Power` value and adds it to its interval's total: the least a bot can do with a reading.
It prints `ready` once in the room; each line on stdin asks for `readings N` (readings taken
so far); stdin closing stops it.
"""

import asyncio
import sys
import threading

from slixmpp import ClientXMPP

NS = "{urn:xmpp:iot:sensordata}"


class ReferenceBot(ClientXMPP):
    def __init__(self, jid, password, ca, room, nick):
        super().__init__(jid, password)
        self.ca_certs = ca
        self.room, self.nick = room, nick
        self.register_plugin("xep_0045")
        self.readings = 0
        self.totals = {}
        self.joined = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.reading)

    async def start(self, _event):
        self.send_presence()
        await self.plugin["xep_0045"].join_muc_wait(self.room, self.nick, maxstanzas=0, timeout=30)
        self.joined.set_result(True)

    def reading(self, msg):
        fields = msg.xml.find(NS + "fields")
        if fields is None:
            return
        for ts in fields.iter(NS + "timestamp"):
            for numeric in ts.iter(NS + "numeric"):
                if numeric.get("name") == "Power":
                    slot = ts.get("value")
                    self.totals[slot] = self.totals.get(slot, 0) + int(numeric.get("value", "0"))
                    self.readings += 1


async def main():
    jid, password, host, port, ca, room, nick = sys.argv[1:8]
    bot = ReferenceBot(jid, password, ca, room, nick)
    bot.connect(address=(host, int(port)))
    await asyncio.wait_for(bot.joined, 60)
    print("ready", flush=True)
    loop = asyncio.get_event_loop()
    done = loop.create_future()

    def report():
        print(f"readings {bot.readings}", flush=True)

    def commands():
        # Read on a thread; the count is read on the loop, where it is updated.
        for _line in sys.stdin:
            loop.call_soon_threadsafe(report)
        loop.call_soon_threadsafe(done.set_result, True)

    threading.Thread(target=commands, daemon=True).start()
    await done
    bot.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
