#!/usr/bin/env python3
"""Checkpoints at the middle record of every batch, then (shardEnded,
shutdownRequested) at the end; after leaseLost it tries too (and must be
refused)."""
import kcl_proto


class Proc(kcl_proto.Base):
    def processRecords(self, msg, cp, ch):
        recs = msg["records"]
        mid = recs[len(recs) // 2]
        kcl_proto.try_checkpoint(cp, ch, mid["sequenceNumber"],
                                 mid["subSequenceNumber"])

    def shardEnded(self, msg, cp, ch):
        kcl_proto.try_checkpoint(cp, ch)

    def shutdownRequested(self, msg, cp, ch):
        kcl_proto.try_checkpoint(cp, ch)

    def leaseLost(self, msg, cp, ch):
        kcl_proto.try_checkpoint(cp, ch)


kcl_proto.run(Proc())
