"""kcld lambda adapter: one event per stdin line -> the function's answer
as one stdout line.  Usage: python3 kcld_adapter.py [module.function]
(default analytics.lambda_handler).  print() in the function goes to
stderr, which kcld logs: stdout carries answers only."""
import importlib, json, os, sys, time

out, sys.stdout = sys.stdout, sys.stderr
module, _, name = (sys.argv[1:] or ["analytics.lambda_handler"])[0].rpartition(".")
handler = getattr(importlib.import_module(module), name)
timeout_ms = int(os.environ.get("KCLD_HANDLER_TIMEOUT_MS", "300000"))


class Context:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", module)
    aws_request_id = ""

    def __init__(self):
        self.deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self.deadline - time.monotonic()) * 1000))


for line in sys.stdin:
    try:
        answer = handler(json.loads(line), Context())
    except Exception as exc:  # what Lambda reports for an unhandled error
        answer = {"errorMessage": str(exc), "errorType": type(exc).__name__}
    out.write(json.dumps(answer) + "\n")
    out.flush()
