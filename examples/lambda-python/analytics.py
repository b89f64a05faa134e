"""The analytics function of the reference pipeline, as written for AWS
Lambda's Kinesis event source: unchanged, it runs under kcld's lambda
handler through kcld_adapter.py.

Each record is a JSON event with an "event_type":

  page_view    {"page", "load_time_ms", "session_page_count"}
  purchase     {"amount" (string or number), "currency", "items":[{"sku",
                "quantity", "price"}]}
  user_signup  {"method", "campaign" (optional)}
  click        {"element", "page"}

For each record it prints one analytics line (JSON); at the end of the
batch a summary line.  On Lambda these go to CloudWatch Logs; under kcld
to kcld's log.  A record that is not JSON or has no event_type is reported
in batchItemFailures (ReportBatchItemFailures), so the event source
retries it and, in the end, sends it to the dead-letter queue.
"""
import base64
import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SLOW_PAGE_MS = 3000
CENT = Decimal("0.01")


def money(value):
    """Exact decimal amount, rounded to cents."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def page_view(ev):
    load = ev.get("load_time_ms")
    load = float(load) if load is not None else None
    pages = int(ev.get("session_page_count", 1))
    return {"page": ev.get("page"),
            "load_time_ms": load,
            "slow": load is not None and load > SLOW_PAGE_MS,
            "bounce": pages <= 1}


def purchase(ev):
    items = ev.get("items") or []
    return {"amount": str(money(ev["amount"])),
            "currency": str(ev.get("currency", "USD")).upper(),
            "items": sum(int(i.get("quantity", 1)) for i in items),
            "skus": sorted({i["sku"] for i in items if "sku" in i})}


def user_signup(ev):
    return {"method": ev.get("method", "unknown"),
            "campaign": ev.get("campaign") or "none"}


def click(ev):
    return {"element": ev.get("element"), "page": ev.get("page")}


HANDLERS = {"page_view": page_view, "purchase": purchase,
            "user_signup": user_signup, "click": click}


def analyze(payload):
    """Returns the analytics dict of one event, or raises ValueError."""
    ev = json.loads(payload)
    if not isinstance(ev, dict) or "event_type" not in ev:
        raise ValueError("no event_type")
    kind = ev["event_type"]
    result = {"event_type": kind, "user_id": ev.get("user_id")}
    handler = HANDLERS.get(kind)
    if handler is None:
        result["ignored"] = True
        return result
    try:
        result.update(handler(ev))
    except (KeyError, TypeError, InvalidOperation) as exc:
        raise ValueError("bad %s event: %r" % (kind, exc)) from exc
    return result


def lambda_handler(event, context):
    failures = []
    counts = {}
    revenue = {}
    loads = []
    bounces = 0
    views = 0
    for record in event["Records"]:
        kinesis = record["kinesis"]
        try:
            data = base64.b64decode(kinesis["data"]).decode("utf-8")
            result = analyze(data)
        except (ValueError, UnicodeDecodeError) as exc:
            print(json.dumps({"type": "rejected",
                              "sequenceNumber": kinesis["sequenceNumber"],
                              "reason": str(exc)}))
            failures.append({"itemIdentifier": kinesis["sequenceNumber"]})
            continue
        kind = result["event_type"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "purchase":
            cur = result["currency"]
            revenue[cur] = revenue.get(cur, Decimal(0)) + Decimal(
                result["amount"])
        elif kind == "page_view":
            views += 1
            bounces += result["bounce"]
            if result["load_time_ms"] is not None:
                loads.append(result["load_time_ms"])
        result["type"] = "analytics"
        result["sequenceNumber"] = kinesis["sequenceNumber"]
        print(json.dumps(result, sort_keys=True))
    summary = {"type": "summary", "records": len(event["Records"]),
               "failed": len(failures), "counts": counts,
               "revenue": {c: str(v) for c, v in sorted(revenue.items())},
               "avg_load_time_ms": (round(sum(loads) / len(loads), 1)
                                    if loads else None),
               "bounce_rate": round(bounces / views, 3) if views else None}
    print(json.dumps(summary, sort_keys=True))
    return {"batchItemFailures": failures}
