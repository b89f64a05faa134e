#!/usr/bin/env python3
"""Checkpoints every batch at its end, but exits with status 3 on the first
batch that holds sequence number $ML_CRASH_SEQ, once ($ML_MARKER marks that
it did).  With $ML_HANG set it hangs on that batch instead."""
import os
import time

import kcl_proto


class Proc(kcl_proto.Base):
    def processRecords(self, msg, cp, ch):
        seqs = [r["sequenceNumber"] for r in msg["records"]]
        marker = os.environ["ML_MARKER"]
        if os.environ.get("ML_CRASH_SEQ") in seqs and \
                not os.path.exists(marker):
            open(marker, "w").close()
            ch.note(crashing=True)
            if os.environ.get("ML_HANG"):
                time.sleep(3600)
            os._exit(3)
        kcl_proto.try_checkpoint(cp, ch)


kcl_proto.run(Proc())
