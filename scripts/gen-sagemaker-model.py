#!/usr/bin/python3
"""Writes src/smapi/sagemaker-model.json: the part of botocore's SageMaker service
model (2017-07-24) that Kiln serves -- the operations below and every shape they
reach. kilnd validates requests against it, so limits, enums and patterns are the
ones boto3 itself uses. Run with Debian's python3-botocore:

    /usr/bin/python3 scripts/gen-sagemaker-model.py
"""
import json
import os
import sys

import botocore
import botocore.loaders

OPERATIONS = [
    "CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "ListTrainingJobs", "UpdateTrainingJob",
    "CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob", "ListProcessingJobs",
    "AddTags", "ListTags", "DeleteTags",
    "CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob", "StopHyperParameterTuningJob",
    "ListHyperParameterTuningJobs", "ListTrainingJobsForHyperParameterTuningJob",
]
KEEP = ("type", "required", "members", "member", "key", "value", "min", "max", "pattern", "enum", "shape",
        "locationName", "timestampFormat")


def main():
    model = botocore.loaders.Loader().load_service_model("sagemaker", "service-2", "2017-07-24")
    shapes, todo = {}, []
    ops = {}
    for name in OPERATIONS:
        op = model["operations"][name]
        ops[name] = {k: op[k]["shape"] for k in ("input", "output") if k in op}
        ops[name]["errors"] = [e["shape"] for e in op.get("errors", [])]
        todo += [s for s in ops[name].values() if isinstance(s, str)] + ops[name]["errors"]
    while todo:
        n = todo.pop()
        if n in shapes:
            continue
        s = {k: v for k, v in model["shapes"][n].items() if k in KEEP}
        for m in s.get("members", {}).values():
            for k in list(m):
                if k not in KEEP:
                    del m[k]
            todo.append(m["shape"])
        for k in ("member", "key", "value"):
            if k in s:
                s[k] = {"shape": s[k]["shape"]}
                todo.append(s[k]["shape"])
        shapes[n] = s
    out = {"metadata": {k: model["metadata"][k] for k in ("apiVersion", "jsonVersion", "targetPrefix")},
           "source": "botocore " + botocore.__version__,
           "operations": ops, "shapes": dict(sorted(shapes.items()))}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "smapi", "sagemaker-model.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{len(ops)} operations, {len(shapes)} shapes -> {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
