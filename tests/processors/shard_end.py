#!/usr/bin/env python3
"""Never checkpoints while processing; answers shardEnded by checkpointing
(as the KCL requires) and fails loudly when that is refused."""
import sys

import kcl_proto


class Proc(kcl_proto.Base):
    def shardEnded(self, msg, cp, ch):
        cp.checkpoint()  # raises CheckpointError: the child then crashes
        ch.note(shard_end_checkpointed=True)


kcl_proto.run(Proc())
sys.exit(0)
