"""Scale out on real engines: MultiWorkerMirroredStrategy with two worker
processes on loopback (TF_CONFIG)."""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

from conftest import REPO, TESTS

WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    index, ports, workdir = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    })
    import numpy as np
    from gan_pkg import export, training
    from tiny import tiny
    cfg = tiny("dcgan", strategy="multi-worker", steps=6)
    result = training.train(cfg, workdir, verbose=0)
    model = result.model
    noise = model.distribute_strategy.run(model.sample_noise, args=(2,))
    noise = np.concatenate([np.asarray(t) for t in model.distribute_strategy.experimental_local_results(noise)])
    trainable = model.generator.trainable_weights + model.discriminator.trainable_weights
    digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in trainable))
    moving = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in model.generator.non_trainable_weights))
    exported = str(export.export_model(model, cfg, os.path.join(workdir, "export"), "gan")) if result.chief else None
    print(json.dumps({"chief": result.chief, "step": result.step, "weights": digest.hexdigest(), "moving": moving.hexdigest(),
                      "noise": noise.ravel()[:4].tolist(), "exported": exported}))
    """
)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_in_lockstep_and_only_the_chief_writes(tmp_path):
    ports = ",".join(map(str, _free_ports(2)))
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([REPO, TESTS]), "PATH": "/usr/bin:/bin"}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(i), ports, str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    chief, other = reports
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["step"] == other["step"] == 6
    assert chief["weights"] == other["weights"]  # all-reduced gradients: identical models
    assert chief["moving"] == other["moving"]  # synchronized batch norm: same moving statistics
    assert chief["noise"] != other["noise"]  # each worker draws its own noise
    assert chief["exported"] and other["exported"] is None
    assert sorted(p.name for p in (tmp_path / "export" / "gan").iterdir() if not p.name.startswith(".")) == ["1"]
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == ["ckpt-0001.keras"]


def test_distributed_keras_tuner_search_runs_each_trial_once(tmp_path):
    from tiny import tiny_flags

    (port,) = _free_ports(1)
    command = [sys.executable, f"{REPO}/tuning/search.py", "--tuner", "random", "--max-trials", "3", "--steps", "3", "--preset", "dcgan",
               "--num-samples", "100", "--directory", str(tmp_path), *tiny_flags("dcgan")]
    base_env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, "PATH": "/usr/bin:/bin",
                "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    names = ["chief", "tuner0", "tuner1"]
    processes = {
        name: subprocess.Popen(command, env={**base_env, "KERASTUNER_TUNER_ID": name}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name in names
    }
    outputs = {}
    try:
        for name in ["tuner0", "tuner1", "chief"]:
            out, err = processes[name].communicate(timeout=400)
            assert processes[name].returncode == 0, f"{name}: {err[-3000:]}"
            outputs[name] = out
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    with open(tmp_path / "dcgan" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(row["status"] == "COMPLETED" for row in rows)
    assert len({row["trial"] for row in rows}) == 3
    # every trial trained exactly once, by one of the two workers
    assert len(list((tmp_path / "dcgan" / "trial_runs").iterdir())) == 3
    assert "best val_fid" in outputs["chief"]
