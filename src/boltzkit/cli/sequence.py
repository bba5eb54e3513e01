"""``boltzkit sequence train|evaluate|generate|diagnose``: sequence models of piano rolls.

Thin over :mod:`boltzkit.models.sequence` and :mod:`boltzkit.data.music`.  ``train`` fits an RNN
or LSTM with sigmoid outputs to predict each frame from the previous ones, or an RNN-RBM /
RTRBM (``--model rnn-rbm|rtrbm``, an RBM per frame with biases from the recurrence), with early
stopping on the validation split, and writes a checkpoint (the common format), ``metrics.csv``,
``curves.png`` and ``test_metrics.json``.  ``evaluate`` prints the negative log-likelihood per
time step (nats, pooled over all frames; for the RBM models each step's log Z exactly when
small, else by AIS with its interval) and the frame accuracy TP/(TP+FP+FN).  ``generate``
samples new pieces (MIDI and a piano-roll PNG).  ``diagnose``
plots ‖∂s_t/∂s_k‖₂ against the lag with the bound (β_W β_s)^{t−k}.  Bad input exits 2 with one
line, before anything is written.  ``train --nproc N`` (or ``torchrun``) is data parallel
(:mod:`boltzkit.training.distributed`): each process takes ``--batch-size`` / N sequences of every
batch; process 0 writes the checkpoint (with every process's random state) and evaluates.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint, plot
from ..data.music import (
    MAX_TRANSPOSE,
    N_NOTES,
    load_music,
    piano_roll_to_midi,
    pick_split,
    split_frames,
    transposed,
)
from ..errors import BoltzkitError, ConfigurationError, DataError, DivergenceError
from ..models.sequence import (
    LSTM,
    RNN,
    RNNRBM,
    RTRBM,
    RecurrentRBM,
    SequenceBatches,
    SequenceModel,
    evaluate_recurrent_rbm,
    evaluate_sequences,
    fit_recurrent_rbm,
    fit_sequences,
    gradient_flow,
    plot_gradient_flow,
)
from ..models.sequence.rnn_rbm import GENERATE_GIBBS_STEPS
from ..training import distributed
from ..training.threads import torch_threads
from ..validation import check_int
from .common import (
    HelpFormatter,
    SaveEachEpoch,
    finite_json,
    output_file,
    resumable,
    resume_on_restart,
    run_settings,
    save_run,
)

#: ``--predict``: the Gibbs mean (no candidates), or the rule over the training frames
#: (``evaluate_recurrent_rbm(predict_rule=…)``)
PREDICT_RULES: dict[str, str | None] = {"mean": None, "map": "map", "frame-mean": "mean"}


def _splits(path: str, frames_per_beat: int) -> dict[str, list]:
    return load_music(path, frames_per_beat)


def _source(rolls: list, name: str) -> SequenceBatches:
    return SequenceBatches([torch.from_numpy(r.astype("float32")) for r in rolls], name=name)


def _load_model(directory: str, rbm: bool = False) -> tuple[Any, dict[str, Any]]:
    """A recurrent network (or, with ``rbm``, also an RNN-RBM / RTRBM) checkpoint."""
    kind = (SequenceModel, RecurrentRBM) if rbm else SequenceModel
    model, config, _ = checkpoint.load_checkpoint(directory, "cpu", kind=kind)
    return model, config


RBM_MODELS = ("rnn-rbm", "rtrbm")


def _rbm_metrics(model: RecurrentRBM, data: SequenceBatches, args: argparse.Namespace,
                 candidates: torch.Tensor | None = None,
                 predict_candidates: torch.Tensor | None = None) -> dict[str, Any]:
    """NLL per step (+ interval when AIS was used, RAISE's NLL with ``--raise-chains``, the certain
    lower bound over ``candidates``) and frame accuracy of an RNN-RBM / RTRBM (the predicted frame:
    the most probable of ``predict_candidates`` when given, or with ``--predict frame-mean`` their
    mean under the step's distribution thresholded at ½)."""
    nll = not getattr(args, "accuracy_only", False)
    metrics = evaluate_recurrent_rbm(model, data, max_bits=args.max_bits, ais_chains=args.ais_chains,
                                     ais_betas=args.ais_betas, seed=args.seed, nll=nll,
                                     raise_chains=getattr(args, "raise_chains", 0), candidates=candidates,
                                     predict_candidates=predict_candidates,
                                     predict_rule=None if predict_candidates is None else PREDICT_RULES[args.predict],
                                     mass_chains=getattr(args, "mass_chains", 0) if candidates is not None else 0,
                                     mass_sweeps=getattr(args, "mass_sweeps", 100))
    if not nll:
        return {"nll_per_step": None, **metrics}
    out = {k: metrics[k] for k in ("nll_per_step", "frame_accuracy", "frames", "log_z")}
    if "nll_low" in metrics:
        out["nll_interval"] = [metrics["nll_low"], metrics["nll_high"]]
    for key in ("nll_lower_bound", "candidate_mass", "candidate_mass_se", "nll_lower_bound_mass",
                "nll_lower_bound_mass_se"):
        if key in metrics:
            out[key] = metrics[key]
    if "nll_raise" in metrics:
        half = 3 * metrics["nll_raise_se"]
        out["nll_raise"] = metrics["nll_raise"]
        out["nll_raise_interval"] = [metrics["nll_raise"] - half, metrics["nll_raise"] + half]
    return out


def _check_rbm_options(args: argparse.Namespace) -> None:
    for flag, name, least in (("--hidden", "n_hidden", 1), ("--recurrent", "n_recurrent", 1), ("--k", "k", 1),
                              ("--pretrain-epochs", "pretrain_epochs", 0),
                              ("--pretrain-rnn-epochs", "pretrain_rnn_epochs", 0), ("--ais-chains", "ais_chains", 1),
                              ("--ais-betas", "ais_betas", 2), ("--max-bits", "max_bits", 0),
                              ("--validate-every", "validate_every", 1), ("--valid-ais-chains", "valid_ais_chains", 1),
                              ("--valid-ais-betas", "valid_ais_betas", 2), ("--epochs", "epochs", 1),
                              ("--batch-size", "batch_size", 1)):
        check_int(flag, getattr(args, name), least=least)


def _save_run(out: Path, model: Any, extra: dict[str, Any], trainer: Any = None) -> None:
    """The checkpoint, with the trainer's state (optimizer, RNG, history; on several processes
    every rank's, gathered on rank 0) for ``--resume`` when given; written by rank 0 alone."""
    if trainer is not None:
        save_run(out, trainer, extra, model)
    elif distributed.is_main():
        checkpoint.save(out, model, extra=extra)


#: the flags that define a ``sequence train`` run (dest: (flag, default)); a resumed run takes
#: them from its checkpoint
RUN_SETTINGS: dict[str, tuple[str, Any]] = {
    "model": ("--model", "rnn"), "recurrence": ("--recurrence", "rnn"), "n_hidden": ("--hidden", 100),
    "n_recurrent": ("--recurrent", 100), "k": ("--k", 15), "pretrain_epochs": ("--pretrain-epochs", 0),
    "pretrain_rnn_epochs": ("--pretrain-rnn-epochs", 0),
    "validate_every": ("--validate-every", 1), "valid_ais_chains": ("--valid-ais-chains", 8),
    "valid_ais_betas": ("--valid-ais-betas", 300), "activation": ("--activation", "tanh"),
    "init": ("--init", "uniform"), "split": ("--split", "train"), "patience": ("--patience", 10),
    "batch_size": ("--batch-size", 8), "lr": ("--lr", 1e-3), "optimizer": ("--optimizer", "adam"),
    "clip": ("--clip", None), "method": ("--method", "autograd"), "truncation": ("--truncation", None),
    "seed": ("--seed", 0), "valid_split": ("--valid-split", "valid"), "frames_per_beat": ("--frames-per-beat", 1),
    "transpose": ("--transpose", 0), "lr_schedule": ("--lr-schedule", "constant"),
    "valid_bound": ("--valid-bound", False),
}


#: the run settings that only the RNN-RBM and RTRBM use (refused for --model rnn|lstm)
RBM_ONLY_SETTINGS = ("n_recurrent", "k", "pretrain_epochs", "pretrain_rnn_epochs", "validate_every",
                     "valid_ais_chains", "valid_ais_betas", "valid_bound")


def _resume(args: argparse.Namespace) -> tuple[Any, tuple[dict[str, torch.Tensor], dict[str, Any]]] | None:
    """The run's settings into ``args`` (:func:`~boltzkit.cli.common.run_settings`); with ``--resume
    DIR`` also its model and training state: the saved settings (all but ``--epochs``, the new
    total) are the run's, and a typed flag that contradicts one is refused."""
    if not args.resume:
        args.settings = run_settings(args, RUN_SETTINGS)
        return None
    model, saved, tensors = resumable(args.resume, "cpu", (SequenceModel, RecurrentRBM))
    kind = ("rtrbm" if isinstance(model, RTRBM) else "rnn-rbm" if isinstance(model, RNNRBM)
            else "lstm" if isinstance(model, LSTM) else "rnn")
    settings = saved.get("settings")
    if not isinstance(settings, dict):  # written before the settings were recorded: what it kept
        shape = {k: v for k, v in model.config().items() if k in ("n_hidden", "n_recurrent", "activation", "init")}
        settings = {**{k: v for k, v in saved["training"].items() if k != "epochs"}, **shape,
                    "split": saved.get("split", "train"), "frames_per_beat": saved.get("frames_per_beat", 1),
                    "model": kind}
    # a setting added after the run was written: the run used its default
    settings = {**{dest: default for dest, (_, default) in RUN_SETTINGS.items()}, **settings}
    args.settings = run_settings(args, RUN_SETTINGS, settings)
    return model, (tensors, saved["training_state"])


def cmd_train(args: argparse.Namespace) -> int:
    out = checkpoint.check_output_directory(args.out)
    resume_on_restart(args)  # torchrun restarted the job: continue from --out
    resume = _resume(args)
    check_int("--transpose", args.transpose, least=0, most=MAX_TRANSPOSE)
    if args.model in RBM_MODELS:
        _check_rbm_options(args)
    elif resume is None:   # a resumed run's saved settings were accepted when it started
        for name in RBM_ONLY_SETTINGS:
            flag, default = RUN_SETTINGS[name]
            if getattr(args, name) != default:
                raise BoltzkitError(f"{flag} is an option of --model rnn-rbm|rtrbm")
    if not Path(args.data).exists():
        raise DataError(f"{args.data}: file not found")
    if args.valid_bound and args.valid_split == "none":
        raise ConfigurationError("--valid-bound validates on --valid-split: it cannot be 'none'")
    distributed.check_split(distributed.planned_world(args), args.batch_size, "--batch-size", "sequences")
    launched = distributed.launch(args, cmd_train, getattr(args, "argv", None))
    if launched is not None:
        return launched
    frames = args.frames_per_beat
    splits = _splits(args.data, frames)
    train = _source(transposed(pick_split(splits, args.split, args.data), args.transpose),
                    f"{args.data} [{args.split}]")
    valid = None
    if args.valid_split != "none":
        if args.valid_split in splits:
            valid = _source(splits[args.valid_split], f"{args.data} [{args.valid_split}]")
        elif args.valid_split != "valid":
            pick_split(splits, args.valid_split, args.data)          # a one-line error naming the splits
    if args.model in RBM_MODELS:
        return _train_rbm(args, out, frames, splits, train, valid, resume)
    if args.recurrence != "rnn":
        raise BoltzkitError("--recurrence is an option of --model rnn-rbm")
    common = dict(output="sigmoid", loss="cross_entropy", task="next_step", seed=args.seed)
    if resume is not None:
        model = resume[0]
        model.check_source(train, f"{args.data} [{args.split}]")
    elif args.model == "rnn":
        model: SequenceModel = RNN(N_NOTES, args.n_hidden, activation=args.activation, init=args.init, **common)
    else:
        if args.activation != "tanh" or args.init != "uniform":
            raise BoltzkitError("--activation and --init are options of --model rnn")
        model = LSTM(N_NOTES, args.n_hidden, **common)
    if args.method == "bptt" and args.model != "rnn":
        raise BoltzkitError("--method bptt (explicit back-propagation through time) is written for --model rnn")
    extra = {"data": str(args.data), "split": args.split, "frames_per_beat": frames, "settings": args.settings,
             "training": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "optimizer", "clip", "method",
                                                        "truncation", "patience", "lr_schedule", "seed")}}
    return _fit_and_report(
        args, out, model, splits, extra,
        lambda: fit_sequences(model, train, valid, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              optimizer=args.optimizer, clip=args.clip, method=args.method,
                              truncation=args.truncation, patience=args.patience if valid is not None else None,
                              lr_schedule=args.lr_schedule, seed=args.seed, threads=args.threads,
                              progress=not args.quiet,
                              callbacks=[SaveEachEpoch(out, extra)], resume=resume and resume[1]),
        lambda m, data: {key: value for key, value in evaluate_sequences(m, data).items()
                         if key in ("nll_per_step", "frame_accuracy", "frames")})


def _fit_and_report(args: argparse.Namespace, out: Path, model: Any, splits: dict[str, list], extra: dict[str, Any],
                    fit: Callable[[], Any], metrics: Callable[[Any, SequenceBatches], dict[str, Any]]) -> int:
    """Train (``fit()`` returns the trainer; divergence → exit status 1 with the last good state),
    score the valid and test splits with ``metrics``, save the run, and (process 0) write
    metrics.csv, curves.png and test_metrics.json and print one summary line."""
    status = 0
    try:
        trainer = fit()
        history = trainer.history
    except DivergenceError as e:
        if distributed.is_main():
            print(f"boltzkit: {e}", file=sys.stderr)
        history, status, trainer = [], 1, None
    result: dict[str, Any] = {}
    with torch_threads(args.threads):
        for split in ("valid", "test") if distributed.is_main() else ():
            if split in splits:
                result[split] = metrics(model, _source(splits[split], split))
    _save_run(out, model, {**extra, "epochs_done": len(history), "result": result}, trainer)
    if not distributed.is_main():
        return status
    if history:
        checkpoint.write_metrics_csv(out / "metrics.csv", history)
        plot.save_curves(history, out / "curves.png")
    checkpoint.atomic_write_text(out / "test_metrics.json", finite_json(result) + "\n")
    summary = "; ".join(f"{s}: NLL {r['nll_per_step']:.3f} nats/step"
                        + (f" ({r['log_z']} log Z)" if "log_z" in r else "")
                        + f", frame accuracy {r['frame_accuracy']:.3f}" for s, r in result.items())
    print(f"wrote {out}/ (model.safetensors, config.json, metrics.csv, curves.png, test_metrics.json); {summary}")
    return status


def _train_rbm(args: argparse.Namespace, out: Path, frames: int, splits: dict[str, list],
               train: SequenceBatches, valid: SequenceBatches | None, resume: Any = None) -> int:
    """``sequence train --model rnn-rbm|rtrbm``: CD-k per step + BPTT (:func:`fit_recurrent_rbm`)."""
    if args.activation != "tanh" or args.init != "uniform" or args.method != "autograd" or args.clip is not None \
            or args.truncation is not None:
        raise BoltzkitError("--activation, --init, --method, --clip and --truncation are options of --model rnn|lstm")
    if resume is not None:
        model: RecurrentRBM = resume[0]
        model.check_source(train, f"{args.data} [{args.split}]")
    elif args.model == "rtrbm":
        for flag, given in (("--recurrence", args.recurrence != "rnn"),
                            ("--pretrain-rnn-epochs", bool(args.pretrain_rnn_epochs))):
            if given:
                raise BoltzkitError(f"{flag} is an option of --model rnn-rbm (the RTRBM's recurrence is its "
                                    "hidden means)")
        model = RTRBM(N_NOTES, args.n_hidden, seed=args.seed)
    else:
        model = RNNRBM(N_NOTES, args.n_hidden, args.n_recurrent, recurrence=args.recurrence, seed=args.seed)
    extra = {"data": str(args.data), "split": args.split, "frames_per_beat": frames, "settings": args.settings,
             "training": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "optimizer", "k", "patience",
                                                        "pretrain_epochs", "pretrain_rnn_epochs", "recurrence",
                                                        "seed", "validate_every",
                                                        "valid_ais_chains", "valid_ais_betas", "lr_schedule",
                                                        "valid_bound")}}
    # the certain lower bound over the training frames (as trained, shifts included) validates
    candidates = torch.from_numpy(split_frames(splits, [args.split], args.transpose, args.data)) \
        if args.valid_bound and valid is not None else None

    def fit() -> Any:
        with torch_threads(args.threads):
            return fit_recurrent_rbm(model, train, valid, epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, optimizer=args.optimizer, k=args.k,
                                     patience=args.patience if valid is not None else None,
                                     pretrain_epochs=args.pretrain_epochs,
                                     pretrain_rnn_epochs=args.pretrain_rnn_epochs, validate_every=args.validate_every,
                                     ais_chains=args.valid_ais_chains, ais_betas=args.valid_ais_betas,
                                     valid_candidates=candidates, lr_schedule=args.lr_schedule,
                                     seed=args.seed, threads=args.threads, progress=not args.quiet,
                                     callbacks=[SaveEachEpoch(out, extra)], resume=resume and resume[1])

    return _fit_and_report(args, out, model, splits, extra, fit, lambda m, data: _rbm_metrics(m, data, args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    for name, least in (("ais_chains", 1), ("ais_betas", 2), ("max_bits", 0), ("raise_chains", 0),
                        ("mass_chains", 0), ("mass_sweeps", 1)):
        check_int("--" + name.replace("_", "-"), getattr(args, name), least=least, optional=name == "mass_sweeps")
    if args.mass_sweeps is not None and not args.mass_chains:
        raise ConfigurationError("--mass-sweeps sets the sweeps of --mass-chains: give --mass-chains too")
    args.mass_sweeps = 100 if args.mass_sweeps is None else args.mass_sweeps
    model, config = _load_model(args.model, rbm=True)
    frames = config.get("frames_per_beat", 1) if args.frames_per_beat is None else args.frames_per_beat
    splits = _splits(args.data, frames)
    data = _source(pick_split(splits, args.split, args.data), f"{args.data} [{args.split}]")
    model.check_source(data, f"{args.data} [{args.split}]")
    with torch_threads(args.threads):
        if isinstance(model, RecurrentRBM):
            if args.mass_chains and not args.lower_bound:
                raise ConfigurationError("--mass-chains measures the mass on the --lower-bound candidates: "
                                         "give --lower-bound")
            # the bound's candidates: every split's distinct frames in every key; the prediction's: the training split's
            candidates = torch.from_numpy(split_frames(splits, source=args.data)) if args.lower_bound else None
            modes = torch.from_numpy(split_frames(splits, ["train"], source=args.data)) \
                if PREDICT_RULES[args.predict] is not None else None
            metrics = _rbm_metrics(model, data, args, candidates, modes)
        else:
            for flag, given in (("--lower-bound", args.lower_bound),
                                (f"--predict {args.predict}", PREDICT_RULES[args.predict] is not None),
                                ("--mass-chains", args.mass_chains > 0),
                                ("--raise-chains", args.raise_chains > 0), ("--accuracy-only", args.accuracy_only)):
                if given:
                    raise ConfigurationError(f"{flag} applies to rnn-rbm/rtrbm checkpoints; "
                                             f"{args.model} holds a {config.get('model')}")
            metrics = evaluate_sequences(model, data)
    result = {"nll_per_step": metrics["nll_per_step"], "frame_accuracy": metrics.get("frame_accuracy"),
              "frames": int(metrics["frames"]), "sequences": len(data), "split": args.split,
              "model": config.get("model")}
    for key in ("log_z", "nll_interval", "nll_lower_bound", "candidate_mass", "candidate_mass_se",
                "nll_lower_bound_mass", "nll_lower_bound_mass_se", "nll_raise", "nll_raise_interval"):
        if key in metrics:
            result[key] = metrics[key]
    if args.json:
        print(finite_json(result))
    else:
        for key, value in result.items():
            print(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}")
    return 0


def _midi_paths(path: Path, n: int) -> list[Path]:
    """``out.mid`` for one piece, ``out-1.mid`` … ``out-N.mid`` for several."""
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(n)]


def cmd_generate(args: argparse.Namespace) -> int:
    check_int("-n", args.n, least=1)
    check_int("--steps", args.steps, least=1)
    if args.gibbs_steps is not None:
        check_int("--gibbs-steps", args.gibbs_steps, least=1)
    if args.frames_from is not None and args.gibbs_steps is not None:
        raise ConfigurationError("--frames-from draws each frame exactly, without Gibbs sweeps: drop --gibbs-steps")
    if args.midi is None and args.png is None and args.npy is None:
        raise ConfigurationError("give at least one of --midi, --png, --npy")
    midi = _midi_paths(output_file(args.midi, "--midi"), args.n) if args.midi else []
    png = output_file(args.png, "--png") if args.png else None
    npy = output_file(args.npy, "--npy") if args.npy else None
    if midi:
        from ..data.music import _mido
        _mido()                                   # fail before sampling when mido is missing
    model, config = _load_model(args.model, rbm=True)
    frames = int(config.get("frames_per_beat", 1))
    generator = torch.Generator().manual_seed(args.seed)
    candidates = None
    for flag, value in (("--frames-from", args.frames_from), ("--gibbs-steps", args.gibbs_steps)):
        if value is not None and not isinstance(model, RecurrentRBM):
            raise ConfigurationError(f"{flag} applies to rnn-rbm/rtrbm checkpoints; {args.model} holds a "
                                     f"{config.get('model')}")
    if args.frames_from is not None:
        candidates = torch.from_numpy(split_frames(_splits(args.frames_from, frames), ["train"],
                                                   source=args.frames_from))
        if not len(candidates):
            raise DataError(f"--frames-from {args.frames_from}: its training split has no frames")
    with torch_threads(args.threads):
        if isinstance(model, RecurrentRBM):
            rolls = model.generate(args.n, args.steps, args.gibbs_steps, generator, candidates)
        else:
            rolls = model.generate(torch.zeros(args.n, model.n_input), args.steps, generator)
    rolls_np = (rolls > 0.5).to(torch.uint8).numpy()
    for path in [*midi, png, npy]:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    for roll, path in zip(rolls_np, midi):
        partial = path.with_name(f".{path.name}.partial")   # each MIDI file appears whole or not at all
        piano_roll_to_midi(roll, partial, frames_per_beat=frames)
        os.replace(partial, path)
    if png is not None:
        _save_rolls(rolls_np, png, f"{args.n} pieces sampled from {config.get('model')} ({args.model})")
    if npy is not None:
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, rolls_np)
        checkpoint.atomic_write_bytes(npy, buffer.getvalue())
    notes = float(rolls_np.sum(-1).mean())
    written = [str(p) for p in midi] + ([str(png)] if png else []) + ([str(npy)] if npy else [])
    print(f"wrote {', '.join(written)}; {args.n} × {args.steps} frames, {notes:.2f} notes per frame on average")
    return 0


def _save_rolls(rolls: Any, path: Path, title: str) -> None:
    """Piano rolls (n, T, 88) as one PNG: time across, MIDI pitch up, one panel per piece."""
    from ..data.music import LOWEST_NOTE

    n = rolls.shape[0]
    fig, axes = plot.new_figure((max(6.0, rolls.shape[1] / 12), 2.2 * n), ncols=1, nrows=n)
    axes = list(axes) if n > 1 else [axes[0]]
    for i, (ax, roll) in enumerate(zip(axes, rolls)):
        ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                  extent=(0, roll.shape[0], LOWEST_NOTE - 0.5, LOWEST_NOTE + N_NOTES - 0.5))
        ax.set_ylabel("MIDI pitch")
        ax.set_title(f"sample {i + 1}", fontsize=9)
    axes[-1].set_xlabel("frame")
    fig.subplots_adjust(hspace=0.6)
    fig.suptitle(title, fontsize=10)
    plot.save_figure(fig, path)


def cmd_diagnose(args: argparse.Namespace) -> int:
    model, config = _load_model(args.model)
    frames = config.get("frames_per_beat", 1) if args.frames_per_beat is None else args.frames_per_beat
    rolls = pick_split(_splits(args.data, frames), args.split, args.data)
    if not 0 <= args.index < len(rolls):
        raise BoltzkitError(f"--index must be in 0..{len(rolls) - 1}, got {args.index}")
    roll = rolls[args.index][:args.steps] if args.steps else rolls[args.index]
    data = _source([roll], f"{args.data} [{args.split}]")
    model.check_source(data, f"{args.data} [{args.split}]")
    png = Path(args.png) if args.png else Path(args.model) / "diagnostics.png"
    checkpoint.check_output_directory(png.parent)
    with torch_threads(args.threads):
        flow = gradient_flow(model, data.all(), max_lag=args.max_lag, stride=args.stride)
    plot_gradient_flow(flow, png, title=f"{config.get('model')} on {Path(args.data).name} [{args.split}] "
                                        f"sequence {args.index} ({roll.shape[0]} steps)")
    summary = flow.to_dict()
    if args.json:
        print(finite_json(summary))  # an exploding network's norms are inf: null with a reason, never Infinity
    else:
        b = f"β_W = {flow.beta_w:.4g}, β_s = {flow.beta_s:g}; " if flow.beta_w is not None else ""
        print(f"wrote {png}; {b}mean ‖∂s_t/∂s_k‖₂ at lag 1: {summary['norm_mean_by_lag'][1]:.4g}, "
              f"at lag {len(summary['norm_mean_by_lag']) - 1}: {summary['norm_mean_by_lag'][-1]}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``boltzkit sequence …``."""
    from .core import add_process_arguments

    p = sub.add_parser("sequence", help="recurrent networks (RNN, LSTM) and RNN-RBM / RTRBM on piano rolls",
                        formatter_class=HelpFormatter)
    seq = p.add_subparsers(dest="sequence_command", required=True)

    def data_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", required=True, metavar="FILE",
                       help="piano rolls: .mat (traindata/validdata/testdata), .json note lists, a .mid file "
                            "or a directory of MIDI files (needs mido)")
        q.add_argument("--frames-per-beat", type=int, default=None, metavar="N",
                       help="MIDI only: frames per quarter note (default 1, or what the model was trained with)")
        q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")

    def ais_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--ais-chains", type=int, default=32,
                       help="rnn-rbm/rtrbm: AIS chains per time step when log Z is not exact (default 32)")
        q.add_argument("--ais-betas", type=int, default=1000,
                       help="rnn-rbm/rtrbm: AIS temperatures per time step (default 1000)")
        q.add_argument("--max-bits", type=int, default=20,
                       help="rnn-rbm/rtrbm: each step's log Z exact when the smaller layer has at most this many "
                            "units, else AIS (default 20)")

    t = seq.add_parser("train", help="train a next-step RNN or LSTM with sigmoid outputs, or an RNN-RBM / RTRBM; "
                                     "early stopping", formatter_class=HelpFormatter)
    data_options(t)
    t.add_argument("--model", choices=("rnn", "lstm") + RBM_MODELS,
                   help="rnn, lstm (recurrent networks) or rnn-rbm, rtrbm (an RBM per frame) (default rnn)")
    t.add_argument("--recurrence", choices=("rnn", "lstm"),
                   help="rnn-rbm: the cell that carries the context (default rnn)")
    t.add_argument("--hidden", dest="n_hidden", type=int, metavar="N",
                   help="hidden units (of each step's RBM for rnn-rbm/rtrbm) (default 100)")
    t.add_argument("--recurrent", dest="n_recurrent", type=int, metavar="N",
                   help="rnn-rbm: units of the recurrent cell (default 100)")
    t.add_argument("--k", type=int, help="rnn-rbm/rtrbm: Gibbs sweeps of CD-k per step (default 15)")
    t.add_argument("--pretrain-epochs", type=int,
                   help="rnn-rbm/rtrbm: epochs of CD on all frames for the shared RBM first (default 0)")
    t.add_argument("--pretrain-rnn-epochs", type=int,
                   help="rnn-rbm: then epochs of the recurrent cell alone as a next-step predictor (σ outputs, "
                        "cross-entropy, --lr) (default 0)")
    t.add_argument("--validate-every", type=int,
                   help="rnn-rbm/rtrbm: validation NLL every N epochs (default 1)")
    t.add_argument("--valid-ais-chains", type=int,
                   help="rnn-rbm/rtrbm: AIS chains per step for the validation NLL (default 8)")
    t.add_argument("--valid-ais-betas", type=int,
                   help="rnn-rbm/rtrbm: AIS temperatures per step for the validation NLL (default 300; short "
                        "schedules are optimistic and misled early stopping, docs/rnn_rbm.md)")
    t.add_argument("--valid-bound", action="store_const", const=True,
                   help="rnn-rbm/rtrbm: validate with the certain lower bound on the NLL (each step's Z summed over "
                        "the distinct training frames, no sampling) instead of AIS: for sets whose frames recur, "
                        "where a short AIS schedule is optimistic by a varying amount (default: AIS)")
    ais_options(t)
    t.add_argument("--activation", choices=("tanh", "relu"), help="RNN activation (default tanh)")
    t.add_argument("--init", choices=("uniform", "identity"),
                   help="RNN recurrent weights: uniform(±1/√H) or identity (IRNN) (default uniform)")
    t.add_argument("--split", help="training split (default train)")
    t.add_argument("--transpose", type=int, metavar="N",
                   help=f"augment the training split with every piece shifted by -N..+N semitones (at most "
                        f"{MAX_TRANSPOSE}; a shift that would move a note off the 88 keys is skipped for that "
                        f"piece; validation and test are never shifted) (default 0: none)")
    t.add_argument("--valid-split",
                   help="split for early stopping, or 'none' (default valid, when the file has one)")
    t.add_argument("--epochs", type=int, default=200, help="most epochs (default 200)")
    t.add_argument("--patience", type=int,
                   help="stop after this many epochs without a better validation NLL (default 10)")
    t.add_argument("--batch-size", type=int, help="sequences per update (default 8)")
    t.add_argument("--lr", type=float, help="learning rate (default 0.001)")
    t.add_argument("--lr-schedule", choices=("constant", "linear"),
                   help="constant, or linear: decaying to 0 over --epochs (per update) (default constant)")
    t.add_argument("--optimizer", choices=("adam", "rmsprop", "sgd"), help="default adam")
    t.add_argument("--clip", type=float, default=None, help="gradient-norm clipping threshold (default none)")
    t.add_argument("--method", choices=("autograd", "bptt"),
                   help="gradient: autograd through the fused kernel, or the explicit BPTT loop (rnn; slower) "
                        "(default autograd)")
    t.add_argument("--truncation", type=int, default=None,
                   help="truncated BPTT length (with --method bptt; default none: full)")
    t.add_argument("--seed", type=int, help="seed of initialisation and data order (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the run saved in DIR (its model, optimizer, random state and settings) up to "
                        "--epochs in total; early stopping starts a new patience window (default: a new run)")
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory")
    add_process_arguments(t)
    t.set_defaults(func=cmd_train)

    e = seq.add_parser("evaluate", help="NLL per time step and frame accuracy of a trained model",
                        formatter_class=HelpFormatter)
    e.add_argument("model", metavar="DIR", help="checkpoint directory written by 'sequence train'")
    data_options(e)
    e.add_argument("--split", default="test", help="split to evaluate (default test)")
    e.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    ais_options(e)
    e.add_argument("--seed", type=int, default=0, help="seed of AIS and the predicted frames (default 0)")
    e.add_argument("--raise-chains", type=int, default=0, metavar="N",
                   help="rnn-rbm/rtrbm with AIS: also N reverse chains per frame from the observed frame "
                        "(RAISE), the conservative side of the NLL bracket: nll_raise (default 0: off)")
    e.add_argument("--lower-bound", action="store_true",
                   help="rnn-rbm/rtrbm: also nll_lower_bound, a certain lower bound on the NLL: each step's Z "
                        "summed over the distinct frames of every split of --data in every key (±6 semitones)")
    e.add_argument("--mass-chains", type=int, default=0, metavar="N",
                   help="with --lower-bound: N Gibbs chains per frame started from the step's distribution "
                        "restricted to the candidates; after --mass-sweeps sweeps the fraction still on a "
                        "candidate, candidate_mass, tightens the bound: nll_lower_bound_mass = nll_lower_bound "
                        "- log candidate_mass, a lower bound up to its standard error nll_lower_bound_mass_se "
                        "(default 0: off)")
    e.add_argument("--mass-sweeps", type=int, metavar="K",
                   help="Gibbs sweeps of each --mass-chains chain (default 100)")
    e.add_argument("--predict", choices=tuple(PREDICT_RULES), default="mean",
                   help="rnn-rbm/rtrbm: the predicted frame of the frame accuracy: 'mean', the mean of 20 Gibbs "
                        "sweeps from the previous frame thresholded at 0.5; 'map', the most probable frame among "
                        "the distinct training frames in every key (±6 semitones); 'frame-mean', the exact mean "
                        "of the step's distribution restricted to those frames, thresholded at 0.5 (default mean)")
    e.add_argument("--accuracy-only", action="store_true",
                   help="rnn-rbm/rtrbm: frame accuracy only, no log Z (seconds where AIS over a long test "
                        "split takes an hour; nll_per_step is null)")
    e.set_defaults(func=cmd_evaluate)

    g = seq.add_parser("generate", help="sample new pieces (Gibbs at each step given the past) as MIDI / PNG",
                        formatter_class=HelpFormatter)
    g.add_argument("model", metavar="DIR", help="checkpoint directory written by 'sequence train'")
    g.add_argument("-n", type=int, default=1, help="pieces (default 1)")
    g.add_argument("--steps", type=int, default=64, help="frames per piece (default 64)")
    g.add_argument("--gibbs-steps", type=int, default=None,
                   help=f"rnn-rbm/rtrbm: Gibbs sweeps per frame, started at the previous frame "
                        f"(default {GENERATE_GIBBS_STEPS}; fewer keep its notes too often)")
    g.add_argument("--frames-from", metavar="DATA", default=None,
                   help="rnn-rbm/rtrbm: draw each frame exactly from the step's distribution restricted to the "
                        "distinct frames of DATA's training split in every key (±6 semitones): no chain to mix, "
                        "no frame the data never use, no new frame either (default off: Gibbs sweeps)")
    g.add_argument("--midi", metavar="FILE", help="MIDI file (FILE-1.mid … for several pieces) (default none)")
    g.add_argument("--png", metavar="FILE", help="piano-roll picture (default none)")
    g.add_argument("--npy", metavar="FILE", help="the rolls as a (n, steps, 88) uint8 array (default none)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    g.set_defaults(func=cmd_generate)

    d = seq.add_parser("diagnose", help="plot ‖∂s_t/∂s_k‖₂ against the lag with the bound (β_W β_s)^(t−k)",
                        formatter_class=HelpFormatter)
    d.add_argument("model", metavar="DIR", help="checkpoint directory written by 'sequence train'")
    data_options(d)
    d.add_argument("--split", default="test", help="split to take the sequence from (default test)")
    d.add_argument("--index", type=int, default=0, help="which sequence of the split (default 0)")
    d.add_argument("--steps", type=int, default=None, help="use only its first N steps (default all)")
    d.add_argument("--max-lag", type=int, default=None, help="largest lag t − k measured (default all)")
    d.add_argument("--stride", type=int, default=1, help="measure from every stride-th k (default 1)")
    d.add_argument("--png", metavar="FILE", help="plot file (default DIR/diagnostics.png)")
    d.add_argument("--json", action="store_true", help="print the per-lag numbers as JSON")
    d.set_defaults(func=cmd_diagnose)
