"""Cloud Functions HTTP entry point of the workflow trigger, called by Cloud Scheduler."""

from __future__ import annotations

import logging
import os

import functions_framework
from google.api_core.exceptions import GoogleAPICallError

from deploy import trigger


@functions_framework.http
def workflow_trigger(request):
    """Start the workflow the JSON body asks for and answer at once (202 with the invocation), or with
    body {"check": true} report every invocation that ended since the last check (500 if one failed).

    Never waits for a run: Cloud Scheduler gives an attempt at most 30 minutes.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one JSON entry per line
    body = request.get_json(silent=True)
    check = body == {"check": True}
    try:
        parsed = None if check else trigger.TriggerRequest.from_json(body)
        target, write_rows = trigger.gcp_target_from_environment()
    except trigger.TriggerRequestError as error:
        return {"error": str(error)}, 400
    except trigger.TriggerSetupError as error:
        return {"error": str(error)}, 500
    try:
        if check:
            reports = trigger.check_and_publish(target, os.environ["LAKEHOUSE_OPS_TABLE"], write_rows)
            failed = any(r.status != "success" for r in reports)
            return {"reported": [r.to_json() for r in reports]}, 500 if failed else 200
        report, _, _ = target.start(parsed)
    except GoogleAPICallError as error:
        return trigger.api_failure(error), 502
    trigger.publish(report, write_rows if report.status != "running" else None)
    return report.to_json(), report.http_status
