"""How big one lifecycle's plan is in Temporal's history, by the size of the people directory.

    python bench/plan_payload.py [--sizes 50,200,2000] [--json]

The plan (closeloop.models.Plan) is what `record_incident` returns to the PostmortemWorkflow: it lands in the
history as that activity's result, and again in every continue-as-new input and in the inputs of the
activities that take the lifecycle's state. This builds a directory of N people (ten reports per manager),
plans one incident whose owner, two reviewers and a participant are in it, and prints the bytes of the plan
and of the workflow's start input as the pydantic data converter encodes them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter

from closeloop.config import Config
from closeloop.models import Incident, PostmortemInput
from closeloop.planning import plan_for


def config_with(n: int) -> Config:
    people = {f"p{i:05d}": {"name": f"Person {i}", "email": f"p{i}@example.com",
                            "manager": f"p{i // 10:05d}" if i else None} for i in range(n)}
    return Config.model_validate({"people": people,
                                  "services": {"checkout": {"owner": "p00042", "reviewers": ["p00043", "p00044"]}}})


def encoded(value: Any) -> int:
    return len(pydantic_data_converter.payload_converter.to_payloads([value])[0].data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,200,2000", help="directory sizes, comma-separated (each >= 50)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    incident = Incident(source="api", external_id="INC-1", title="Checkout 500s", services=["checkout"],
                        commander="p00042", participants=["p00045"])
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        config = config_with(n)
        plan = plan_for(config, config.people_directory(), incident, incident.workflow_id)
        rows.append({"directory": n, "plan_bytes": encoded(plan), "people_in_plan": len(plan.people),
                     "start_input_bytes": encoded(PostmortemInput(incident=incident))})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'directory':>10} {'plan bytes':>11} {'people in plan':>15} {'start input bytes':>18}")
        for r in rows:
            print(f"{r['directory']:>10} {r['plan_bytes']:>11} {r['people_in_plan']:>15} {r['start_input_bytes']:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
