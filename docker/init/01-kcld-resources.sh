#!/bin/sh
# LocalStack ready hook (mounted at /etc/localstack/init/ready.d by
# compose.yaml): creates what kcld in docker/kcld.yaml consumes and writes to.
#   - the stream, KCLD_SHARDS shards
#   - the results table of the DynamoDB handler (pk, sk: strings)
#   - the dead-letter queue
# kcld creates its own lease table.  Safe to run again (PERSISTENCE=1):
# what exists is left alone.  A non-zero exit marks the hook ERROR, which
# keeps the localstack service unhealthy and kcld from starting.
set -eu

stream=${KCLD_STREAM:-kcld-docker}
shards=${KCLD_SHARDS:-4}
table=${KCLD_RESULTS_TABLE:-kcld-docker-results}
queue=${KCLD_DLQ:-kcld-docker-dlq}

# LocalStack accepts any keys; awslocal needs some.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

log() {
  echo "kcld-init: $*"
}

if awslocal kinesis describe-stream-summary --stream-name "$stream" \
    >/dev/null 2>&1; then
  log "stream $stream exists"
else
  log "creating stream $stream with $shards shards"
  awslocal kinesis create-stream --stream-name "$stream" \
    --shard-count "$shards"
fi
awslocal kinesis wait stream-exists --stream-name "$stream"

if awslocal dynamodb describe-table --table-name "$table" >/dev/null 2>&1; then
  log "table $table exists"
else
  log "creating table $table"
  awslocal dynamodb create-table --table-name "$table" \
    --attribute-definitions AttributeName=pk,AttributeType=S \
      AttributeName=sk,AttributeType=S \
    --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
    --billing-mode PAY_PER_REQUEST >/dev/null
fi
awslocal dynamodb wait table-exists --table-name "$table"

# CreateQueue is idempotent for the same attributes.
log "creating queue $queue"
awslocal sqs create-queue --queue-name "$queue" >/dev/null

log "ready: stream $stream, table $table, queue $queue"
