#!/usr/bin/env bash
# Checks that the manifests parse as YAML and have the fields the README relies on
# with PyYAML, in a throwaway venv under target/ (made once; PyYAML from PyPI).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$here/../../target/yaml-venv
if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q pyyaml >&2
fi
python=$venv/bin/python
"$python" - "$here" <<'PY'
import os, sys, yaml
here = sys.argv[1]
job = yaml.safe_load(open(os.path.join(here, "validate-job.yaml")))
merge = yaml.safe_load(open(os.path.join(here, "merge-job.yaml")))
spec = job["spec"]
assert job["kind"] == "Job" and spec["completionMode"] == "Indexed", "validate-job must be an Indexed Job"
env = {e["name"]: e["value"] for e in spec["template"]["spec"]["containers"][0]["env"]}
assert int(env["SHARDS"]) == spec["completions"] == spec["parallelism"], "SHARDS, completions, parallelism differ"
assert "--shard" in spec["template"]["spec"]["containers"][0]["args"][0]
assert "validate merge" in merge["spec"]["template"]["spec"]["containers"][0]["args"][0]
print("deploy/validate: manifests parse;", env["SHARDS"], "shards")
PY
