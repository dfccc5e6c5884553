#!/usr/bin/python3
"""A slixmpp ComponentXMPP for the router's black-box tests, driven line by line in JSON.

crates/test-support/src/slix.rs starts it as
    slix_component.py HOST PORT DOMAIN SECRET [--echo]
and reads one JSON object per line on stdout, one event each:
    {"ev": "online"}                      handshake accepted
    {"ev": "message", "from", "to", "body", "id", "type", "condition"}
                                          a message with a body, or an error message
                                          ("condition": its error's condition)
    {"ev": "presence", "from", "to", "type"}
    {"ev": "iq", "from", "to", "id", "type", "xml"}
                                          an iq get or set; it is answered with an empty
                                          result (disco#info: an identity, category
                                          "gateway", type "test")
    {"ev": "iq_result", "id", "type", "condition", "xml"}
                                          the answer to an "iq_get" command ("type" is
                                          "result", "error" or "timeout")
    {"ev": "sent", "cmd", "id"}            a command's stanza was handed to slixmpp
    {"ev": "stream_error", "condition", "text"}
    {"ev": "disconnected", "reason"}       then the script exits (status 0)
    {"ev": "bad_command", "line", "error"}
and one command per line on stdin:
    {"cmd": "message", "to", "body", "from"?, "id"?, "type"?}
    {"cmd": "iq_get", "to", "id", "from"?, "payload"?}   payload "ping" (default) or "disco"
    {"cmd": "presence", "to", "from"?, "type"?}
    {"cmd": "quit"}                        end the stream cleanly
"from" defaults to the component's domain. With --echo every message with a body is
answered to its sender with the same body, type and id (a bridge stand-in).
EOF on stdin aborts the connection and exits.
"""

import asyncio
import json
import logging
import sys
import threading

from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET as ElementTree
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "jabber:component:accept"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
PING = "urn:xmpp:ping"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
IQ_TIMEOUT = 20


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Harness(ComponentXMPP):
    def __init__(self, domain, secret, host, port, echo):
        ComponentXMPP.__init__(self, domain, secret, host, port)
        self.domain = domain
        self.echo = echo
        self.add_event_handler("session_start", lambda _: emit(ev="online"))
        # slixmpp raises "message" for a message with a body and "message_error"
        # for one with an <error/>: a bounce that carries the body raises both.
        self.add_event_handler(
            "message", lambda m: m["type"] != "error" and self.on_message(m)
        )
        self.add_event_handler("message_error", self.on_message)
        self.add_event_handler("presence", self.on_presence)
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.register_handler(
            Callback("harness iq", MatchXPath("{%s}iq" % NS), self.on_iq)
        )

    def on_message(self, msg):
        emit(
            ev="message",
            **{"from": str(msg["from"])},
            to=str(msg["to"]),
            body=msg["body"],
            id=msg["id"],
            type=msg["type"],
            condition=error_condition(msg),
        )
        if self.echo and msg["body"] and msg["type"] != "error":
            reply = self.make_message(
                mto=msg["from"], mfrom=msg["to"], mbody=msg["body"], mtype=msg["type"]
            )
            reply["id"] = msg["id"]
            reply.send()

    def on_presence(self, pres):
        emit(
            ev="presence",
            **{"from": str(pres["from"])},
            to=str(pres["to"]),
            type=pres["type"],
        )

    def on_iq(self, iq):
        if iq["type"] not in ("get", "set"):
            return  # results and errors go to the iq_get command that waits for them
        emit(
            ev="iq",
            **{"from": str(iq["from"])},
            to=str(iq["to"]),
            id=iq["id"],
            type=iq["type"],
            xml=str(iq),
        )
        asks_disco = iq.xml.find("{%s}query" % DISCO_INFO) is not None
        reply = iq.reply(clear=True)
        if asks_disco:
            reply.append(
                ElementTree.fromstring(
                    "<query xmlns='%s'><identity category='gateway' type='test' "
                    "name='slixmpp harness'/></query>" % DISCO_INFO
                )
            )
        reply.send()

    def on_stream_error(self, err):
        emit(ev="stream_error", condition=err["condition"], text=err["text"])

    def on_disconnected(self, reason):
        emit(ev="disconnected", reason=str(reason) if reason else None)
        self.loop.call_soon(self.loop.stop)

    # ---- commands ----

    def command(self, line):
        try:
            cmd = json.loads(line)
            getattr(self, "cmd_" + cmd["cmd"])(cmd)
        except Exception as e:  # a test's mistake: say so, keep running
            emit(ev="bad_command", line=line, error=repr(e))

    def cmd_message(self, cmd):
        msg = self.make_message(
            mto=cmd["to"],
            mfrom=cmd.get("from", self.domain),
            mbody=cmd["body"],
            mtype=cmd.get("type", "chat"),
        )
        msg["id"] = cmd.get("id") or msg["id"]
        msg.send()
        emit(ev="sent", cmd="message", id=msg["id"])

    def cmd_presence(self, cmd):
        self.make_presence(
            pto=cmd["to"], pfrom=cmd.get("from", self.domain), ptype=cmd.get("type")
        ).send()
        emit(ev="sent", cmd="presence", id=None)

    def cmd_iq_get(self, cmd):
        iq = self.make_iq_get(ito=cmd["to"], ifrom=cmd.get("from", self.domain))
        iq["id"] = cmd["id"]
        payload = cmd.get("payload", "ping")
        ns = {"ping": PING, "disco": DISCO_INFO}[payload]
        tag = "ping" if payload == "ping" else "query"
        iq.append(ElementTree.fromstring("<%s xmlns='%s'/>" % (tag, ns)))
        asyncio.ensure_future(self.await_result(iq))
        emit(ev="sent", cmd="iq_get", id=cmd["id"])

    async def await_result(self, iq):
        iq_id = iq["id"]
        try:
            res = await iq.send(timeout=IQ_TIMEOUT)
            emit(ev="iq_result", id=iq_id, type="result", condition=None, xml=str(res))
        except IqError as e:
            condition = error_condition(e.iq)  # before slixmpp adds its own <error/>
            emit(ev="iq_result", id=iq_id, type="error", condition=condition, xml=str(e.iq))
        except IqTimeout:
            emit(ev="iq_result", id=iq_id, type="timeout", condition=None, xml=None)

    def cmd_quit(self, _cmd):
        self.disconnect()


def error_condition(stanza):
    """The defined condition of a stanza's <error/>, whatever namespace the error
    element is in (slixmpp's own accessor looks for it in jabber:client only, and
    inside a component finds none); None without an error."""
    for child in stanza.xml:
        if child.tag.rpartition("}")[2] != "error":
            continue
        for cond in child:
            if cond.tag.startswith("{%s}" % STANZAS) and not cond.tag.endswith("}text"):
                return cond.tag.rpartition("}")[2]
    return None


def read_commands(xmpp):
    """stdin in a thread: each line is handed to the event loop; EOF aborts."""
    for line in sys.stdin:
        if line.strip():
            xmpp.loop.call_soon_threadsafe(xmpp.command, line.strip())
    xmpp.loop.call_soon_threadsafe(abort, xmpp)


def abort(xmpp):
    xmpp.abort()
    xmpp.loop.stop()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 4:
        sys.exit(__doc__)
    host, port, domain, secret = args
    logging.basicConfig(
        level=logging.DEBUG if "--debug" in sys.argv else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    xmpp = Harness(domain, secret, host, int(port), "--echo" in sys.argv)
    xmpp.connect()
    threading.Thread(target=read_commands, args=(xmpp,), daemon=True).start()
    xmpp.loop.run_forever()

if __name__ == "__main__":
    main()
