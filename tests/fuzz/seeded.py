"""Prints the schemathesis configuration of what the walk-through seeded:
dictionaries of its identifiers, and the path parameters that draw from
them half the time (the other half is generated), so the fuzz reaches
records that exist. Used by tests/fuzz/run.

    python3 seeded.py BASE_URL CA_FILE SEED_LOG
"""

import json
import os
import re
import ssl
import sys
import urllib.request

base, ca, seed_log = sys.argv[1:4]
context = ssl.create_default_context(cafile=ca)


def get(path, role):
    request = urllib.request.Request(
        base + path, headers={"Authorization": "Bearer " + os.environ[f"FUZZ_TOKEN_{role}"]}
    )
    with urllib.request.urlopen(request, context=context) as response:
        return json.load(response)


log = open(seed_log, encoding="utf-8", errors="replace").read()
applications = get("/v1/applications", "GOVERNANCE")["applications"]
ids = {a["id"] for a in applications}
ids |= {a["agreement"]["id"] for a in applications if a.get("agreement")}
ids |= {d["id"] for d in get("/v1/datasets", "RESEARCHER")["datasets"]}
webhooks = set()
for application in applications:
    ids |= {r["id"] for r in get(f"/v1/applications/{application['id']}/releases", "AUDITOR")["releases"]}
    webhooks |= {w["id"] for w in get(f"/v1/applications/{application['id']}/webhooks", "RESEARCHER")["webhooks"]}
for state in ["pending", "approved", "rejected", "unsealed"]:
    ids |= {r["id"] for r in get(f"/v1/recontact-requests?state={state}", "GOVERNANCE")["requests"]}
dictionaries = {
    "ids": sorted(ids),
    "webhooks": sorted(webhooks),
    "patient_refs": sorted(set(re.findall(r'"patient_ref":"([0-9a-f]{64})"', log))),
    "genome_ids": sorted(set(re.findall(r'"genome_id":"(GS[0-9A-Z-]+)"', log))),
    "organizations": ["pharma-co", "hospital-a", "genome-store.example"],
}
for name, values in dictionaries.items():
    if values:
        print(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n")
print("[parameters]")
for parameter, name in [
    ("path.id", "ids"),
    ("path.webhook", "webhooks"),
    ("path.patient_ref", "patient_refs"),
    ("path.genome_id", "genome_ids"),
    ("path.org", "organizations"),
    ("path.center_org", "organizations"),
]:
    if dictionaries[name]:
        print(f'"{parameter}" = {{ dictionary = "{name}", probability = 0.5 }}')
