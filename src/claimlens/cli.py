"""``claimlens`` command line: train, import and inspect runs.

    claimlens train fixtures/default.toml --out runs/default
    claimlens train-sweep fixtures/sweeps/data_fraction.toml --executor pool
    claimlens import full_run_data.pth --out runs/paper
    claimlens import hf://callummcdougall/grokking_full_run_data/full_run_data.pth --out runs/arena
    claimlens info runs/default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from claimlens import __version__
from claimlens.errors import ClaimlensError


def _cmd_train(args: argparse.Namespace) -> int:
    from claimlens.config import RunSpec
    from claimlens.executor import TrainJob, train_all
    from claimlens.runs.store import Run

    spec = RunSpec.from_toml(args.spec)
    if args.epochs is not None:
        import dataclasses

        train = dataclasses.replace(spec.train, epochs=args.epochs,
                                    checkpoint_every=min(spec.train.checkpoint_every, args.epochs))
        spec = dataclasses.replace(spec, train=train).validate()
    result = train_all([TrainJob(spec, args.device, out=str(args.out))], args.executor,
                       progress=not args.quiet).results[0]
    if not result.ok:
        print(f"claimlens train: error: {result.error}", file=sys.stderr)
        return 2
    run = Run.open(Path(result.path))
    print(f"trained {run.name!r}: {len(run.epochs)} checkpoints in {run.path}")
    _print_info(run)
    return 0


def _cmd_train_sweep(args: argparse.Namespace) -> int:
    """Train the members of a sweep spec into the cache through the executor, without pytest; every member is
    reported (trained, cached or failed with its error), a failure stops none of the others: exit 1 if any failed."""
    from claimlens.executor import TrainJob, train_all
    from claimlens.runsets import SweepSpec

    sweep = SweepSpec.from_toml(args.sweep)
    members = sweep.members()
    if args.member:
        unknown = sorted(set(args.member) - {m.label for m in members})
        if unknown:
            raise ClaimlensError(f"--member {unknown}: not members of the sweep {sweep.name!r} "
                                 f"({[m.label for m in members]})")
        members = [m for m in members if m.label in args.member]
    trained = train_all([TrainJob(m.spec, args.device, label=m.label) for m in members], args.executor,
                        progress=not args.quiet, desc=f"sweep {sweep.name}")
    width = max(len(m.label) for m in members)
    for result in trained.results:
        if not result.ok:
            print(f"failed   {result.label:<{width}}  {result.error}")
        elif not result.trained:
            print(f"cached   {result.label:<{width}}  {_shown(Path(result.path))}")
        else:
            print(f"trained  {result.label:<{width}}  {_shown(Path(result.path))}  ({result.seconds:.1f} s, "
                  f"{result.device}, {_n(_first(result.threads), 'thread')})")
    done = [r for r in trained.results if r.ok and r.trained]
    failed = trained.failed
    print(f"sweep {sweep.name!r}: {len(done)} trained, {len(trained.results) - len(done) - len(failed)} cached, "
          f"{len(failed)} failed, in {trained.seconds:.1f} s {trained.executor}")
    return 1 if failed else 0


def _first(threads) -> int:
    return int(threads[-1] if isinstance(threads, list) else threads or 0)


def _cmd_import(args: argparse.Namespace) -> int:
    from claimlens.config import RunSpec
    from claimlens.runs.importers import import_run

    spec = RunSpec.from_toml(args.spec) if args.spec else None
    source, name, hub = Path(args.source), args.name, None
    if args.source.startswith("hf://"):  # a file or folder on the Hugging Face Hub, through its cache
        from claimlens.runs.hub import fetch, parse

        fetched = fetch(parse(args.source))
        source, hub = fetched.local, fetched.provenance()
        name = name or (spec.name if spec else fetched.ref.run_name)
    run = import_run(source, args.out, spec=spec, name=name, hub=hub,
                     checkpoint_every=args.checkpoint_every, epoch_pattern=args.epoch_pattern,
                     final_epoch=args.final_epoch, ignore_logged_losses=args.ignore_logged_losses,
                     split_unknown=args.split_unknown,
                     progress=not args.quiet)
    print(f"imported {_n(len(run.epochs), 'checkpoint')} into {run.path}")
    _print_info(run)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from claimlens.runs.store import Run

    run = Run.open(_run_or_builtin(args.run), require_complete=False)
    if args.json:
        print(json.dumps(_info_dict(run), indent=1))
    else:
        _print_info(run)
    from claimlens.errors import CheckpointError

    try:  # the files are the ones run.json records (each hashed once per machine): else say which, exit 2
        run.verify_files()
    except CheckpointError as exc:
        print(f"claimlens info: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_or_builtin(path: Path) -> Path:
    """A run directory, or the cached run of a built-in spec named by its name (``pizza``) or its spec file
    (``fixtures/pizza.toml``). Raises :class:`ClaimlensError` when that run has not been trained yet."""
    from claimlens.builtin import FIXTURES, cached_run_path
    from claimlens.config import RunSpec

    if path.is_dir():
        return path
    if not path.exists():
        from claimlens.plugin.runs import _published, _references

        published = _published()
        if str(path) in published:  # a source's own model shipped with claimlens: imported into the cache once
            from claimlens.builtin import ensure_imported

            return ensure_imported(published[str(path)][0], str(path), progress=False).path
        if str(path) in _references():
            raise ClaimlensError(f"{str(path)!r} is a curves-only reference (no checkpoints, no run.json): judge it "
                                 f"with `pytest claims/ --run {path}`; its provenance is in {_references()[str(path)]}"
                                 f"/README.md")
    spec_path = path if path.suffix == ".toml" and path.is_file() else FIXTURES / f"{path.name}.toml"
    if path.exists() and path.suffix != ".toml" or not spec_path.is_file():
        return path  # Run.open says what is wrong with it
    spec = RunSpec.from_toml(spec_path)
    cached = cached_run_path(spec)  # trained here on first use (auto: on CUDA when available) ...
    if not cached.is_dir():
        cached = cached_run_path(spec, "cpu")  # ... or trained on the CPU
    if not cached.is_dir():
        raise ClaimlensError(f"{str(path)!r}: the run of {spec_path.name} is not trained yet (looked in {cached}); "
                             f"`pytest claims/ --run {_shown(spec_path)}` trains it into the cache")
    return cached


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _info_dict(run) -> dict:
    import torch

    from claimlens.core.series import MIN_TRAJECTORY_CHECKPOINTS, grokking_summary

    log = run.log()
    info = {
        "name": run.name, "path": str(run.path), "status": run.manifest["status"],
        "content_hash": run.content_hash, "spec": run.spec.to_dict(), "source": run.manifest["source"],
        **({} if run.spec.task.is_sequences else
           {"split_unknown": run.task.split_unknown} if not run.task.split_known else
           {"n_train": int(run.task.train_idx.numel()), "n_test": int(run.task.test_idx.numel())}),
        "checkpoints": {"count": len(run.epochs), "first": run.epochs[0] if run.epochs else None,
                        "last": run.epochs[-1] if run.epochs else None},
    }
    if log["epoch"].numel():
        last = -1
        if run.spec.task.is_sequences:  # the induction toy measures its held-out loss at checkpoints only
            finite = torch.isfinite(log["test_loss"])
            last = int(finite.nonzero().max()) if bool(finite.any()) else -1
        info["final"] = {k: float(v[last] if k.startswith("test") else v[-1]) for k, v in log.items() if k != "epoch"}
        info["final"]["epoch"] = int(log["epoch"][-1])
        if run.spec.task.is_sequences:
            pass
        elif not run.task.split_known:
            info["grokking"] = {"unresolved": "the split is unknown: claimlens cannot tell when this run memorised "
                                              "or generalised (claims that need train vs test are skipped)"}
        elif len(run.epochs) < MIN_TRAJECTORY_CHECKPOINTS:
            info["grokking"] = {"unresolved": (
                f"{len(run.epochs)} checkpoint{'s' if len(run.epochs) != 1 else ''}: claimlens cannot tell when this "
                f"run memorised or generalised (trajectory claims need ≥ {MIN_TRAJECTORY_CHECKPOINTS} checkpoints "
                f"and are skipped; final-checkpoint claims are judged)")}
        else:
            s = grokking_summary(log["epoch"], log["train_acc"], log["test_acc"])
            info["grokking"] = {"threshold": s.threshold, "memorised_epoch": s.memorised_epoch,
                                "generalised_epoch": s.generalised_epoch, "delay_ratio": s.delay_ratio}
    return info


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _print_info(run) -> None:
    info = _info_dict(run)
    spec = run.spec
    m = spec.model
    model = (f"transformer {f'n_layers={m.n_layers} ' if m.n_layers != 1 else ''}d_model={m.d_model} n_heads={m.n_heads} d_head={m.d_head} d_mlp={m.d_mlp} act={m.act_fn}"
             + (f" attn_rate={m.attn_rate:g}" if m.attn_rate != 1 else "")
             + ("" if m.equals_token else " inputs=[a, b]") + ("" if m.causal else " causal=false")
             if m.kind == "transformer" else
             f"attention-only n_layers={m.n_layers} d_model={m.d_model} n_heads={m.n_heads} d_head={m.d_head} "
             f"layer_norm={str(m.layer_norm).lower()}"
             if m.kind == "attn_only" else
             f"mlp d_embed={m.d_embed} hidden={list(m.hidden)} combine={m.combine} act={m.act_fn}")
    task = spec.task
    task_line = (f"repeated subsequences: {task.seq_len} tokens over {task.d_vocab}, a {task.repeat_len}-token "
                 f"subsequence {task.n_repeats} times, "
                 + ("at least one random token before each later repeat (the first layout); " if task.max_gap == -1
                    else f"0 … {task.max_gap} random tokens between repeats; ")
                 + (f"a finite set of {task.n_sequences} sequences" if task.n_sequences else "fresh sequences every step")
                 if task.is_sequences else
                 f"a+b mod {task.p}; " + ("split unknown" if "split_unknown" in info else
                                          f"{info['n_train']} train / {info['n_test']} test pairs"))
    t = spec.train
    # what a checkpoint's number counts: optimiser steps on minibatches (the induction toy, a batch_size spec), else
    # full-batch epochs
    unit = "step" if task.is_sequences or t.batch_size else "epoch"
    source = info["source"]
    read = source.get("train_read_from_source")
    provenance = ("" if read is None else f"  (from the file: {', '.join(read) if read else 'nothing'}; the rest are "
                                          f"claimlens's defaults, not the source's)")
    lines = [
        f"run        {info['name']}  ({info['status']}, content hash {info['content_hash'][:12]})",
        f"path       {info['path']}",
        f"source     {info['source'].get('kind')}" + _where_trained(info["source"])
        + (f", {info['source']['train_seconds']:.1f} s of training" if info["source"].get("train_seconds") else ""),
        f"task       {task_line}",
        f"model      {model}",
        f"training   {t.optimizer} lr={t.lr:g} wd={t.weight_decay:g} betas={tuple(t.betas)} "
        f"warmup={t.warmup_steps} {unit}s={t.epochs} seed={t.seed}"
        + (f" batch={t.batch_size}" if t.batch_size else "") + provenance,
        (f"{unit + 's':<11}{_n(info['checkpoints']['count'], 'checkpoint')}, {info['checkpoints']['first']} … "
        f"{info['checkpoints']['last']}"),
    ]
    if m.frozen:
        lines.append(f"frozen     {', '.join(m.frozen)} (held fixed by training and the learning coefficient)")
    if source.get("stored_dtype"):
        lines.append(f"weights    {_dtype_line(source['stored_dtype'])}")
    hub = source.get("hub")
    if hub:
        lines.append(f"hub        {hub.get('reference')}: {hub.get('repo_id')} at {hub.get('revision')}, commit "
                     f"{hub.get('commit')}" + (f", sha256 {hub['sha256']}" if hub.get("sha256") else ""))
    for note in source.get("conversions", []):
        lines.append(f"import     {note}")
    if "split_unknown" in info:
        lines.append(f"split      unknown: {info['split_unknown']}")
    elif source.get("split_rule"):
        lines.append(f"split      {source['split_rule']}")
    search = source.get("split_search")
    if search:
        lines.append(f"split      seed search: the stated split_seed {search['stated_seed']} is {search['stated_error']:.0%} "
                     f"off the logged losses at {unit}s {search['epochs']}; of seeds {search['tried']} only "
                     f"{search['found_seed']} reproduces it ({search['error']:.1%} off; the next best "
                     f"{search['runner_up_error']:.0%})")
    for name, check in (source.get("logged_losses") or {}).items():
        lines.append(f"logged     {check.get('key', name)}: "
                     + (f"reproduced at {check['checkpoints_compared']} checkpoint(s), worst {check['max_rel_err']:.1%} "
                        f"apart; matched {check['matched']}" if check.get("verified") else check.get("reason", "")))
    for field, values in (source.get("config_disagrees_with_optimizer") or {}).items():
        lines.append(f"evidence   {field}: {values}")
    if source.get("proposal"):
        lines.append(f"note       {source['proposal']}")
    if "final" in info:
        f = info["final"]
        lines.append(f"final      {unit} {f['epoch']}: " + (
            f"loss on all pairs {f['all_loss']:.3e} acc {f['all_acc']:.3f}" if "all_loss" in f else
            f"train loss {f['train_loss']:.3e} acc {f['train_acc']:.3f}; test loss {f['test_loss']:.3e} acc "
            f"{f['test_acc']:.3f}"))
        g = info.get("grokking", {})
        if not g:  # the induction toy: its claims say what happened
            pass
        elif "unresolved" in g:
            lines.append(f"grokking   {g['unresolved']}")
        elif g["generalised_epoch"] is None:
            lines.append(f"grokking   not reached (test accuracy never ≥ {g['threshold']}); "
                         f"train accuracy ≥ {g['threshold']} at {unit} {g['memorised_epoch']}")
        else:
            lines.append(f"grokking   train acc ≥ {g['threshold']} at {unit} {g['memorised_epoch']}, test acc ≥ "
                         f"{g['threshold']} at {unit} {g['generalised_epoch']} (delay ratio {g['delay_ratio']:.1f}x)")
    print("\n".join(lines))


def _where_trained(source: dict) -> str:
    from claimlens.runs.manifest import where_trained

    where = where_trained(source)
    return f" on {where}" if where else ""


def _dtype_line(stored: str) -> str:
    """How an import's checkpoints were stored (``bfloat16``; ``bfloat16, float32`` when mixed) and how claimlens
    holds them (float32)."""
    dtypes = set(stored.split(", "))
    if dtypes == {"float32"}:
        return "stored as float32"
    exact = dtypes <= {"float16", "bfloat16", "float32"}
    return (f"stored as {stored} by the source; held as float32 "
            + ("(exactly: every such value is a float32)" if exact else "(rounded to float32)"))


def _cmd_report(args: argparse.Namespace) -> int:
    from claimlens.report.html import render_file

    source = Path(args.report)
    try:
        out = render_file(source, args.out or source.with_suffix(".html"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ClaimlensError(f"{str(source)!r} is not a claimlens claims.json ({type(exc).__name__}: {exc})") from None
    print(f"wrote {out}")
    return 0


def _load_report(path: Path) -> dict:
    from claimlens.report.document import load

    return load(path)


def _cmd_diff(args: argparse.Namespace) -> int:
    from claimlens.report.compare import diff, format_diff

    d = diff(_load_report(args.old), _load_report(args.new), rtol=args.rtol)
    print(json.dumps(d, indent=1) if args.json else "\n".join(format_diff(d, flips_shown=None)))
    return 1 if any(f["to"] != "passed" for f in d["flips"]) else 0


def _cmd_thresholds(args: argparse.Namespace) -> int:
    from claimlens import thresholds as th

    overrides = th.from_pyproject(args.pyproject)
    rows = th.table(overrides)
    if args.json:
        print(json.dumps([{"claim": c, "name": n, "value": v, "default": d, "source": src, "why": w}
                          for c, n, v, d, src, w in rows], indent=1))
        return 0
    width = max(len(f"{c}.{n}") for c, n, *_ in rows)
    print(f"{'claim.threshold':<{width}}  {'value':<7} {'source':<8} why")
    for c, n, value, default, source, why in rows:
        changed = f"  (default {default:g}, set in {args.pyproject})" if value != default else ""
        src = f"{source:.3g}" if source is not None else "–"
        print(f"{f'{c}.{n}':<{width}}  {value:<7g} {src:<8} {why}{changed}")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from claimlens.report import document
    from claimlens.report.html import render_file

    try:
        merged = document.merge([_load_report(p) for p in args.reports])
    except ValueError as exc:
        raise ClaimlensError(str(exc)) from None
    document.write(args.out, merged)
    html_path = render_file(args.out, args.out.with_suffix(".html"))
    print(f"merged {len(args.reports)} reports ({len(merged['runs'])} runs, {len(merged['records'])} records) "
          f"into {args.out} and {html_path}")
    return 0


EXECUTOR_HELP = ("where the runs are trained: pool (a process per core, the default), pool:N, serial (this process, "
                 "its own thread count), dask (a Dask LocalCluster), dask:tcp://HOST:PORT (a running Dask scheduler). "
                 "Default: $CLAIMLENS_EXECUTOR, else pool")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claimlens", description="Mechanistic claims about training dynamics, as tests.")
    parser.add_argument("--version", action="version", version=f"claimlens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run from a spec (resumes an interrupted run in the same --out)")
    p.add_argument("spec", type=Path, help="run spec TOML, e.g. fixtures/default.toml")
    p.add_argument("--out", type=Path, required=True, help="run directory to create or resume")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: CUDA when available, "
                                                   "else the CPU)")
    p.add_argument("--executor", help=EXECUTOR_HELP)
    p.add_argument("--epochs", type=int, help="override the spec's number of epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("train-sweep", help="train the members of a sweep spec into the cache, several at once (the "
                                           "executor), without pytest; a member that fails is reported and the others "
                                           "finish (exit 1)")
    p.add_argument("sweep", type=Path, help="sweep spec TOML, e.g. fixtures/sweeps/data_fraction.toml")
    p.add_argument("--executor", help=EXECUTOR_HELP)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto: CUDA when available, else "
                                                   "the CPU); part of each run's cache key")
    p.add_argument("--member", action="append", default=[], metavar="LABEL",
                   help="train only this member (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train_sweep)

    p = sub.add_parser("import", help="import a full_run_data.pth, a single-checkpoint file or a folder of checkpoints as a run")
    p.add_argument("source", help="full_run_data.pth-style file, or a folder of checkpoint files, here or on the "
                                  "Hugging Face Hub: hf://OWNER/REPO[/PATH][@REVISION] (through its cache; "
                                  "HF_HUB_OFFLINE=1: the cache only)")
    p.add_argument("--out", type=Path, required=True, help="new run directory (must not exist or be empty)")
    p.add_argument("--spec", type=Path, help="spec TOML describing the run, if the source has no usable config")
    p.add_argument("--name", help="run name, used in test ids and reports (wins over the spec's name; default: the "
                   "--spec's name, else the folder's or file's name, or the folder above one with a generic name "
                   "like checkpoints/)")
    p.add_argument("--checkpoint-every", type=int, help="state that the checkpoints were saved every N epochs from 0 "
                   "(only for a source without an epochs list)")
    p.add_argument("--epoch-pattern", help="regular expression whose first group is the epoch in a checkpoint "
                   "file's name (folders whose names carry other numbers, e.g. 'CHECKPOINT_(\\d+)_')")
    p.add_argument("--final-epoch", type=int, help="the epoch of a file holding one model and no 'epoch' key")
    p.add_argument("--split-unknown", action="store_true",
                   help="import with the train/test split unknown (the claims that need it are skipped; those on all "
                        "pairs are judged): for a model whose split cannot be stated")
    p.add_argument("--ignore-logged-losses", action="store_true",
                   help="do not check the file's train_losses/test_losses against its weights (nor use them to find "
                        "a split): for logged values that are not the model's cross entropy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("info", help="config, epochs, final losses and grokking epochs of a run")
    p.add_argument("run", type=Path, help="run directory, or a built-in run's name or spec (pizza, "
                                          "fixtures/pizza.toml: its cached run)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("report", help="render a stored claims.json as a self-contained HTML page")
    p.add_argument("report", type=Path, help="claims.json written by `pytest claims/`")
    p.add_argument("--out", type=Path, help="HTML file (default: next to the JSON, .html)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("diff", help="compare two claims.json: flips, added/removed tests, largest moves (exit 1 on "
                       "a claim that passed in OLD and fails in NEW)")
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--rtol", type=float, default=0.05, help="relative tolerance for moves (default 0.05)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser("thresholds", help="the pass threshold of every claim, its default and where it comes from")
    p.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"),
                   help="read overrides from [tool.claimlens.thresholds] here (default: ./pyproject.toml)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_thresholds)

    p = sub.add_parser("merge", help="merge claims.json files of separate runs into one multi-run report")
    p.add_argument("reports", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True, help="merged JSON (the HTML is written next to it)")
    p.set_defaults(func=_cmd_merge)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ClaimlensError as exc:
        print(f"claimlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder: files are written atomically, so nothing was lost
        where = f" {exc.filename!s}" if exc.filename else ""
        print(f"claimlens {args.command}: error: could not read or write{where} ({exc.strerror or exc}); files "
              f"written before are unchanged", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"claimlens {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
