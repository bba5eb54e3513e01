"""Exact test log-likelihood of MLP energies learned on 2-D toy densities, and sampler throughput.

For each toy (default 8gaussians and moons) and each negative phase (CD-1, CD-10, PCD-10,
replay buffer with k = 10) × kernel (Langevin, MALA, HMC with 5 leapfrog steps), an MLP
energy 2-64-64-1 (SiLU) on the box [−4.5, 4.5]² is trained with Adam (lr 3e-3, β₁ = 0,
linear decay) for the same number of updates of 200 points; the test log-likelihood of
5,000 fresh points is exact (log Z by Simpson quadrature, 301² nodes).  The ceiling is the
true density's own test log-likelihood.  When ``torchebm`` is importable (here or in the
interpreter given by ``--torchebm-python``), the same networks (same initial weights, data,
updates, lr, chains, step sizes) are trained with torchebm's ContrastiveDivergence and its
LangevinDynamics / HamiltonianMonteCarlo samplers and evaluated by the same quadrature;
torchebm has no MALA and no plain persistent chains (its ``persistent=True`` is a replay
buffer).  Sampler throughput (chain steps per second, 1,000 chains) is measured on one trained
energy for both libraries in the same run.  Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 python benchmarks/bench_energy.py --torchebm-python /work/venv-bench/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from boltzkit.cli.energy import build_model, evaluate_model, make_negative_phase, save_density_plot
from boltzkit.data.toy import TOY_BOX, sample_toy, toy_log_density
from boltzkit.sampling import ChainState
from boltzkit.training import Trainer, TrainingConfig

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = [("CD-1", "cd", 1), ("CD-10", "cd", 10), ("PCD-10", "pcd", 10), ("replay-10", "replay", 10)]
SAMPLERS = ["langevin", "mala", "hmc"]
STEP = {"langevin": 0.01, "mala": 0.05, "hmc": 0.1}
HIDDEN, LEAPFROG, BATCH, LR = [64, 64], 5, 200, 3e-3

TORCHEBM_WORKER = r'''
import json, sys, time
import numpy as np, torch
from torch import nn
torch.set_num_threads(1)
job = json.loads(sys.argv[1])
from torchebm.samplers import LangevinDynamics, HamiltonianMonteCarlo
from torchebm.losses import ContrastiveDivergence
from torchebm.core import BaseModel

def mlp():
    sizes = [2, *job["hidden"], 1]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)

class Energy(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = mlp()
    def forward(self, x, **kwargs):
        return self.net(x).squeeze(-1)

def sampler_for(name, model, step):
    if name == "langevin":
        return LangevinDynamics(model, step_size=step, noise_scale=1.0)
    return HamiltonianMonteCarlo(model, step_size=step, n_leapfrog_steps=job["leapfrog"])

out = {}
if job["mode"] == "train":
    x = torch.from_numpy(np.load(job["data"])).float()
    init = {k: torch.tensor(v) for k, v in json.load(open(job["init"])).items()}
    for run in job["runs"]:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        model = Energy()
        model.load_state_dict(init)
        sampler = sampler_for(run["sampler"], model, run["step"])
        loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=run["k"], persistent=run["persistent"],
                                        buffer_size=10000, new_sample_ratio=0.05, energy_reg_weight=0.0)
        opt = torch.optim.Adam(model.parameters(), lr=job["lr"], betas=(0.0, 0.999))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / job["updates"]))
        t = time.perf_counter()
        step = 0
        while step < job["updates"]:
            order = torch.randperm(len(x), generator=g)
            for rows in order.split(job["batch"]):
                if step >= job["updates"]:
                    break
                opt.zero_grad()
                loss, _ = loss_fn(x[rows], generator=g)
                loss.backward()
                opt.step(); sched.step(); step += 1
        out[run["name"]] = {"seconds": time.perf_counter() - t,
                            "state": {k: v.tolist() for k, v in model.state_dict().items()}}
else:
    model = Energy()
    model.load_state_dict({k: torch.tensor(v) for k, v in json.load(open(job["init"])).items()})
    start = torch.rand(job["chains"], 2) * 9 - 4.5
    for name in ("langevin", "hmc"):
        sampler = sampler_for(name, model, job["step"][name])
        sampler.sample(x=start.clone(), n_steps=5)
        t = time.perf_counter()
        sampler.sample(x=start.clone(), n_steps=job["steps"])
        out[name] = job["chains"] * job["steps"] / (time.perf_counter() - t)
print(json.dumps(out))
'''


def torchebm_python(explicit: str | None) -> str | None:
    """An interpreter that can import torchebm (this one, or ``explicit``), else None."""
    for python in ([explicit] if explicit else []) + [sys.executable]:
        try:
            ok = subprocess.run([python, "-c", "import torchebm"], capture_output=True).returncode == 0
        except OSError:
            ok = False
        if ok:
            return python
    return None


def run_worker(python: str, job: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TORCHEBM_WORKER)
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([python, f.name, json.dumps(job)], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"torchebm worker failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)


def mlp_state(model) -> dict[str, list]:
    """The MLP's weights under the plain ``net.*`` names (the torchebm worker's module)."""
    return {k.removeprefix("module."): v.tolist() for k, v in model.module.state_dict().items()}


def train_ours(x: torch.Tensor, method: str, k: int, sampler: str, updates: int):
    model = build_model(2, TOY_BOX, sampler, STEP[sampler], LEAPFROG, HIDDEN, "silu", 0, 0.0)
    estimator = make_negative_phase(method, k, None, 10000, 0.05)
    epochs = max(1, round(updates * BATCH / len(x)))
    config = TrainingConfig(epochs=epochs, batch_size=BATCH, lr=LR, seed=0, weight_decay=0.0,
                            init_visible_bias=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.0, 0.999))
    trainer = Trainer(model, config, estimator=estimator, optimizer=optimizer)
    t = time.perf_counter()
    trainer.fit(x)
    return model, time.perf_counter() - t, trainer.history[-1]


def throughput_ours(model, chains: int, steps: int) -> dict[str, float]:
    out = {}
    g = torch.Generator().manual_seed(0)
    start = torch.rand(chains, 2, generator=g) * 9 - 4.5
    for name in SAMPLERS:
        m = build_model(2, TOY_BOX, name, STEP[name], LEAPFROG, HIDDEN, "silu", 0, 0.0)
        m.module.load_state_dict(model.module.state_dict())
        if hasattr(m.sampler, "adapt"):
            m.sampler.adapt = False
        m.advance(ChainState(start.clone()), 5, g)
        t = time.perf_counter()
        m.advance(ChainState(start.clone()), steps, g)
        out[name] = chains * steps / (time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toys", nargs="+", default=["8gaussians", "moons"])
    parser.add_argument("--updates", type=int, default=1000, help="parameter updates per run (default 1000)")
    parser.add_argument("--torchebm-python", help="a Python that has torchebm (e.g. a separate venv)")
    parser.add_argument("--no-torchebm", action="store_true")
    parser.add_argument("--methods", nargs="+", default=[m[0] for m in METHODS], choices=[m[0] for m in METHODS],
                        help="negative phases to run (default all)")
    parser.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS,
                        help="kernels to run (default all; torchebm runs langevin and hmc)")
    parser.add_argument("--out", default=str(RESULTS / "energy.json"),
                        help="JSON report; the density plots go beside it as <stem>_<toy>.png")
    args = parser.parse_args()
    methods = [m for m in METHODS if m[0] in args.methods]
    out = Path(args.out)
    torch.set_num_threads(1)
    python = None if args.no_torchebm else torchebm_python(args.torchebm_python)
    print(f"torchebm: {'found at ' + python if python else 'not importable; its rows are skipped'}", flush=True)
    report: dict = {"settings": {"updates": args.updates, "batch": BATCH, "lr": LR, "hidden": HIDDEN,
                                 "leapfrog": LEAPFROG, "step_size": STEP, "train_points": 10000,
                                 "test_points": 5000, "grid": "Simpson 301 x 301 on [-4.5, 4.5]^2"},
                    "toys": {}}
    thr_model = None
    for toy in args.toys:
        x_np = sample_toy(toy, 10000, seed=0)
        test_np = sample_toy(toy, 5000, seed=1)
        x, test = torch.from_numpy(x_np), torch.from_numpy(test_np)
        rows = {"true density (ceiling)": {"log_likelihood": float(toy_log_density(toy, test_np).mean())}}
        for label, method, k in methods:
            for sampler in args.samplers:
                name = f"{label} {sampler}"
                try:
                    model, seconds, last = train_ours(x, method, k, sampler, args.updates)
                    ll = evaluate_model(model, test)["log_likelihood"]
                except Exception as e:  # a diverged run is a result too
                    rows[f"boltzkit {name}"] = {"error": str(e)[:200]}
                    print(f"{toy:>11} boltzkit {name:>20}: {e}", flush=True)
                    continue
                rows[f"boltzkit {name}"] = {"log_likelihood": ll, "seconds": seconds,
                                            "acceptance_rate": last.get("acceptance_rate"),
                                            "step_size": last.get("step_size")}
                print(f"{toy:>11} boltzkit {name:>20}: {ll:8.4f} nats  ({seconds:5.1f} s)", flush=True)
                if (label, sampler) == ("PCD-10", "mala"):
                    g = torch.Generator().manual_seed(3)
                    samples = model.sample(2000, 500, g).numpy()
                    out.parent.mkdir(parents=True, exist_ok=True)
                    save_density_plot(out.with_name(f"{out.stem}_{toy}.png"), model, x_np, samples,
                                      lambda p, toy=toy: toy_log_density(toy, p),
                                      f"{toy}: PCD-10 MALA, {args.updates} updates")
                    if thr_model is None:
                        thr_model = model
        if python and any(m[1] != "pcd" for m in methods) and {"langevin", "hmc"} & set(args.samplers):
            init = build_model(2, TOY_BOX, "mala", None, LEAPFROG, HIDDEN, "silu", 0, 0.0)
            with tempfile.TemporaryDirectory() as tmp:
                np.save(Path(tmp) / "x.npy", x_np)
                (Path(tmp) / "init.json").write_text(json.dumps(mlp_state(init)))
                runs = [{"name": f"{label} {s}", "sampler": s, "k": k, "persistent": method == "replay",
                         "step": STEP[s]} for label, method, k in methods if method != "pcd"
                        for s in ("langevin", "hmc") if s in args.samplers]
                job = {"mode": "train", "data": str(Path(tmp) / "x.npy"), "init": str(Path(tmp) / "init.json"),
                       "runs": runs, "updates": args.updates, "batch": BATCH, "lr": LR, "hidden": HIDDEN,
                       "leapfrog": LEAPFROG}
                results = run_worker(python, job)
            for name, res in results.items():
                model = build_model(2, TOY_BOX, "mala", None, LEAPFROG, HIDDEN, "silu", 0, 0.0)
                model.module.load_state_dict({f"{k}": torch.tensor(v) for k, v in res["state"].items()})
                ll = evaluate_model(model, test)["log_likelihood"]
                rows[f"torchebm {name}"] = {"log_likelihood": ll, "seconds": res["seconds"]}
                print(f"{toy:>11} torchebm {name:>20}: {ll:8.4f} nats  ({res['seconds']:5.1f} s)", flush=True)
        report["toys"][toy] = rows
    if thr_model is not None:
        chains, steps = 1000, 100
        thr = {"boltzkit": throughput_ours(thr_model, chains, steps)}
        if python:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "init.json").write_text(json.dumps(mlp_state(thr_model)))
                thr["torchebm"] = run_worker(python, {"mode": "throughput", "init": str(Path(tmp) / "init.json"),
                                                      "chains": chains, "steps": steps, "hidden": HIDDEN,
                                                      "leapfrog": LEAPFROG, "step": STEP})
        report["throughput_chain_steps_per_s"] = {"chains": chains, "steps": steps, **thr}
        print("throughput (chain steps/s):", json.dumps(thr), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    print("reproduce: OMP_NUM_THREADS=1 python benchmarks/bench_energy.py "
          + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
