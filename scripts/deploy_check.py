"""Checks deploy/serve (the Kubernetes manifests of `resnet serve`) without a cluster.

`manifests DIR` parses every YAML file, checks that kustomization.yaml lists them all and that
the objects agree with each other (Service/NetworkPolicy selectors match the pod labels, named
ports exist, probe ports are container ports, the HPA targets the Deployment, volume mounts name
volumes, the server's --port/--management-port match the container ports), then prints the
server's arguments as the local test runs them: one per line, with the model replaced by
MODEL_SPEC, --bind by 127.0.0.1, and the two port options dropped (the test picks free ports).
Then one line "probe PATH" for each HTTP path the kubelet and Prometheus will GET on the
inference port.

`probe URL PATH...` GETs each path and fails unless every one answers 200.
Used by scripts/deploy-check.sh.
"""

import glob
import os
import sys
import urllib.error
import urllib.request

import yaml


def fail(message):
    print(f"deploy-check: {message}", file=sys.stderr)
    sys.exit(1)


def load(directory):
    objects = {}
    files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, "*.yaml")))
    for name in files:
        with open(os.path.join(directory, name)) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            for key in ("apiVersion", "kind"):
                if key not in doc:
                    fail(f"{name}: a document without {key}")
            objects.setdefault(doc["kind"], []).append(doc)
    return files, objects


def one(objects, kind):
    found = objects.get(kind, [])
    if len(found) != 1:
        fail(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def option(args, name):
    if name not in args:
        fail(f"the server's arguments have no {name}: {args}")
    return args[args.index(name) + 1]


def manifests(directory, model_spec):
    files, objects = load(directory)
    kustomization = one(objects, "Kustomization")
    listed = sorted(kustomization.get("resources", []))
    expected = sorted(f for f in files if f != "kustomization.yaml")
    if listed != expected:
        fail(f"kustomization.yaml lists {listed}, the folder has {expected}")

    deployment = one(objects, "Deployment")
    service = one(objects, "Service")
    hpa = one(objects, "HorizontalPodAutoscaler")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        fail(f"the Deployment's selector {selector} does not match its pod labels {labels}")
    if any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
        fail(f"the Service's selector {service['spec']['selector']} does not match the pod labels {labels}")
    for policy in objects.get("NetworkPolicy", []):
        chosen = policy["spec"]["podSelector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in chosen.items()):
            fail(f"NetworkPolicy {policy['metadata']['name']} selects {chosen}, not the pods {labels}")

    target = hpa["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Deployment", deployment["metadata"]["name"]):
        fail(f"the HPA targets {target}, not Deployment {deployment['metadata']['name']}")
    if not 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]:
        fail("the HPA needs 1 <= minReplicas <= maxReplicas")

    containers = pod["spec"]["containers"]
    server = next((c for c in containers if c["args"][:1] == ["serve"]), None)
    if server is None:
        fail("no container runs `resnet serve`")
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    args = [str(a) for a in server["args"]]
    if int(option(args, "--port")) != ports.get("http"):
        fail(f"--port {option(args, '--port')} is not the container port named http ({ports.get('http')})")
    if int(option(args, "--management-port")) != ports.get("management"):
        fail("--management-port is not the container port named management")
    for svc_port in service["spec"]["ports"]:
        if svc_port["targetPort"] not in ports and svc_port["targetPort"] not in ports.values():
            fail(f"the Service's targetPort {svc_port['targetPort']} is not a container port")
    for policy in objects.get("NetworkPolicy", []):
        for rule in policy["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                if p["port"] not in ports and p["port"] not in ports.values():
                    fail(f"NetworkPolicy port {p['port']} is not a container port")

    volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
    for c in containers + pod["spec"].get("initContainers", []):
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes:
                fail(f"container {c['name']} mounts undefined volume {mount['name']}")
        if "resources" not in c or "requests" not in c["resources"]:
            fail(f"container {c['name']} has no resource requests")

    probe_paths = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = server.get(kind)
        if probe is None:
            fail(f"the server container has no {kind}")
        port = probe["httpGet"]["port"]
        if port not in ("http", ports["http"]):
            fail(f"the {kind} does not probe the inference port")
        probe_paths.append(probe["httpGet"]["path"])
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") == "true":
        if int(annotations["prometheus.io/port"]) != ports["http"]:
            fail("prometheus.io/port is not the inference port")
        probe_paths.append(annotations.get("prometheus.io/path", "/metrics"))

    # The server's arguments as the local test runs them.
    local, i = [], 0
    replaced = {"--model": model_spec, "--bind": "127.0.0.1"}
    while i < len(args):
        a = args[i]
        if a in ("--port", "--management-port"):
            i += 2
        elif a in replaced:
            local += [a, replaced[a]]
            i += 2
        else:
            local.append(a)
            i += 1
    for line in local:
        print(line)
    for path in dict.fromkeys(probe_paths):
        print(f"probe {path}")
    print(f"deploy-check: {len(files)} files, {sum(len(v) for v in objects.values())} objects parse and agree",
          file=sys.stderr)


def probe(url, paths):
    failures = 0
    for path in paths:
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except OSError as e:
            status, body = f"no answer ({e})", b""
        ok = status == 200
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  GET {path} -> {status} {body[:80]!r}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "manifests":
        manifests(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3:])
    else:
        fail("usage: deploy_check.py manifests DIR MODEL_SPEC | probe URL PATH...")
