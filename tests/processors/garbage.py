#!/usr/bin/env python3
"""Writes everything a careless record processor might on stdout: plain
text, JSON that is not a message, an unknown action, a very long line, a
malformed checkpoint and one past the records it was given, a checkpoint
request split over several writes; and lines on stderr."""
import json
import sys
import time

import kcl_proto


def raw(s):
    sys.stdout.write(s)
    sys.stdout.flush()


class Proc(kcl_proto.Base):
    def processRecords(self, msg, cp, ch):
        raw("hello, this is not JSON\n")
        raw("[1, 2, 3]\n")
        raw('{"no": "action"}\n')
        raw('{"action": "dance"}\n')
        raw('{"action": "status"}\n')
        raw("x" * (17 << 20) + "\n")
        sys.stderr.write("a warning on stderr\n")
        sys.stderr.flush()
        # Malformed checkpoint: a number for the sequence.
        raw('{"action": "checkpoint", "sequenceNumber": 5}\n')
        ans = ch.read()
        ch.note(malformed_answer=ans)
        # A sequence number beyond the batch.
        kcl_proto.try_checkpoint(cp, ch, "99999999999999999999999", 0)
        # A checkpoint request in pieces (null: the end of the batch).
        raw('{"action": "checkp')
        time.sleep(0.05)
        raw('oint", "sequenceNumber": nu')
        time.sleep(0.05)
        raw('ll}\r\n')
        ans = ch.read()
        ch.note(split_answer=ans)


kcl_proto.run(Proc())
