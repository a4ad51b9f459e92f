"""Lightning's training-step throughput relative to a plain PyTorch loop of the same work
(target: Lightning >= 0.95x the plain loop).

Both sides train a fresh ``PretrainModule`` (same seed, so the same initial weights) on the
same batches, which are built once and held in memory, served by identical single-process
DataLoaders (``batch_size=None``, no workers). The optimizer and schedule are the
module's own (``configure_optimizers``: AdamW + per-step LambdaLR); gradients are clipped at
norm 1.0 on both sides (the trainer's ``gradient_clip_val``). Compared:

* ``plain``: ``module.masked_loss`` -> backward -> clip -> optimizer.step -> zero_grad ->
  scheduler.step, in a for loop;
* ``lightning``: ``Trainer.fit`` of the module as it is (its ``training_step`` also logs
  train_loss, tokens_seen and lr each step, as in production);
* ``lightning-bare``: the same with a ``training_step`` that only returns the loss (the
  framework's own overhead, without the module's per-step logging).

Lightning runs with logger=False, enable_checkpointing=False, enable_progress_bar=False,
enable_model_summary=False, no validation, on one CPU device, fp32. The first
``--warmup`` steps of each run are not timed (timing starts at the end of step
``warmup`` and stops at the end of the last step, via a callback / in the loop), so
Trainer construction and fit set-up are excluded; ``fit_s`` reports them separately.
Variants are interleaved over ``--rounds`` rounds (order rotated each round) and the
median tokens/s of each is reported. The final losses of the variants must agree (same
computation); their largest difference is printed.

Run (2-core CPU, about 1.5 minutes):
    .venv/bin/python benchmarks/lightning_vs_plain.py
    .venv/bin/python benchmarks/lightning_vs_plain.py --preset tiny --steps 3 --warmup 1 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import math
import time

from bench_common import machine, markdown_table, median, warn_if_busy, write_json

VARIANTS = ("plain", "lightning", "lightning-bare")


def make_batches(n: int, batch: int, window: int, seed: int) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        values = torch.randn(batch, 1, window, generator=g).cumsum(-1) + 10.0
        observed = torch.rand(batch, 1, window, generator=g) > 0.02  # a few gaps
        out.append({"values": values * observed, "observed": observed})
    return out


def loader(batches: list[dict]):
    from torch.utils.data import DataLoader, Dataset

    class InMemory(Dataset):
        def __len__(self) -> int:
            return len(batches)

        def __getitem__(self, i: int) -> dict:
            return batches[i]

    return DataLoader(InMemory(), batch_size=None, shuffle=False, num_workers=0)


def new_module(args, config, future: int, total: int, bare: bool = False):
    import torch

    from models.pretraining.module import PretrainModule

    cls = PretrainModule
    if bare:

        class Bare(PretrainModule):
            def training_step(self, batch, batch_idx):
                out = self.masked_loss(batch)
                return out[0] if isinstance(out, tuple) else out

        cls = Bare
    torch.manual_seed(args.seed)
    return cls(config.to_dict(), future_length=future, lr=args.lr, warmup_steps=max(1, total // 10), max_steps=total)


def optimizer_and_scheduler(module):
    conf = module.configure_optimizers()
    if isinstance(conf, dict):
        sched = conf.get("lr_scheduler")
        return conf["optimizer"], (sched["scheduler"] if isinstance(sched, dict) else sched)
    if isinstance(conf, (list, tuple)) and len(conf) == 2 and isinstance(conf[0], (list, tuple)):
        sched = conf[1][0] if conf[1] else None
        return conf[0][0], (sched["scheduler"] if isinstance(sched, dict) else sched)
    return conf, None


def run_plain(args, config, future, batches, tokens_per_step) -> dict:
    import torch

    total = len(batches)
    module = new_module(args, config, future, total)
    module.train()
    optimizer, scheduler = optimizer_and_scheduler(module)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    started = time.perf_counter()
    t0 = None
    for i, batch in enumerate(loader(batches)):
        out = module.masked_loss(batch)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        if i == args.warmup - 1:
            t0 = time.perf_counter()
    t1 = time.perf_counter()
    return {
        "seconds": t1 - t0,
        "fit_s": t1 - started,
        "final_loss": float(loss.detach()),
        "threads": torch.get_num_threads(),
    }


def run_lightning(args, config, future, batches, tokens_per_step, bare: bool) -> dict:
    import lightning as L
    import torch

    total = len(batches)

    class StepTimer(L.Callback):
        def __init__(self):
            self.t0 = self.t1 = None
            self.loss = None
            self.threads = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == args.warmup - 1:
                self.t0 = time.perf_counter()
            if batch_idx == total - 1:
                self.t1 = time.perf_counter()
                self.loss = float(outputs["loss"].detach())
                self.threads = torch.get_num_threads()

    module = new_module(args, config, future, total, bare=bare)
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=total,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        use_distributed_sampler=False,
        callbacks=[timer],
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader(batches))
    finished = time.perf_counter()
    if timer.t0 is None or timer.t1 is None:
        raise RuntimeError(f"Lightning ran {trainer.global_step} of {total} steps")
    return {
        "seconds": timer.t1 - timer.t0,
        "fit_s": finished - started,
        "final_loss": timer.loss,
        "threads": timer.threads,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="4m")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each run (>= 1)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each variant, interleaved")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for every run (default: torch's)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        ap.error("--warmup, --steps and --rounds must be >= 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    from models.backbone.presets import PRESETS

    if args.preset not in PRESETS:
        ap.error(f"--preset must be one of {', '.join(PRESETS)}")
    if "plain" not in variants or any(v not in VARIANTS for v in variants):
        ap.error(f"--variants must include plain and be among {', '.join(VARIANTS)}")

    import logging
    import warnings

    import lightning  # noqa: F401 - imported before timing anything
    import torch

    # Lightning's banners (GPU available..., tips) and data-loader hints between the figures
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    from models.backbone.presets import get_preset

    warn_if_busy()
    threads = args.threads or torch.get_num_threads()
    config = get_preset(args.preset)
    p = config.patch_size
    ctx, fut = math.ceil(args.context / p) * p, math.ceil(args.horizon / p) * p
    tokens_per_step = args.batch * (ctx + fut) // p
    batches = make_batches(args.warmup + args.steps, args.batch, ctx + fut, args.seed)
    print(
        f"preset {args.preset}, window {ctx}+{fut}, batch {args.batch}, {tokens_per_step} tokens/step, "
        f"{args.steps} timed steps (+{args.warmup}), {args.rounds} rounds, {threads} threads",
        flush=True,
    )

    # one untimed run first: the process's first steps (allocator, thread pool) are slower
    torch.set_num_threads(threads)
    run_plain(args, config, fut, batches[: args.warmup + 1], tokens_per_step)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate: no variant always first
        for v in order:
            gc.collect()  # the previous run's Trainer/module cycles are not collected mid-run
            torch.set_num_threads(threads)
            if v == "plain":
                res = run_plain(args, config, fut, batches, tokens_per_step)
            else:
                res = run_lightning(args, config, fut, batches, tokens_per_step, bare=v == "lightning-bare")
            res["tokens_per_s"] = args.steps * tokens_per_step / res["seconds"]
            runs[v].append(res)
            print(
                f"  round {r + 1} {v}: {res['tokens_per_s']:,.0f} tokens/s "
                f"({1000 * res['seconds'] / args.steps:.1f} ms/step, loss {res['final_loss']:.5f}, "
                f"threads {res['threads']})",
                flush=True,
            )

    plain = median([x["tokens_per_s"] for x in runs["plain"]])
    rows = []
    for v in variants:
        tps = [x["tokens_per_s"] for x in runs[v]]
        rows.append(
            {
                "variant": v,
                "median": median(tps),
                "min": min(tps),
                "max": max(tps),
                "ms_per_step": 1000 * tokens_per_step / median(tps),
                "ratio": median(tps) / plain,
                "fit_s": median([x["fit_s"] for x in runs[v]]),
            }
        )
    losses = [x["final_loss"] for v in variants for x in runs[v]]
    loss_spread = max(losses) - min(losses)
    print()
    print(
        markdown_table(
            rows,
            [
                ("variant", "variant", ""),
                ("median", "median tokens/s", ",.0f"),
                ("min", "min", ",.0f"),
                ("max", "max", ",.0f"),
                ("ms_per_step", "ms/step", ".1f"),
                ("ratio", "vs plain", ".3f"),
                ("fit_s", "whole run s (median)", ".2f"),
            ],
        )
    )
    ratio = rows[[r["variant"] for r in rows].index("lightning")]["ratio"] if "lightning" in runs else None
    print(f"\nfinal losses agree to {loss_spread:.2e} (same computation on every side)")
    if ratio is not None:
        print(f"Lightning / plain = {ratio:.3f} ({'meets' if ratio >= 0.95 else 'misses'} the 0.95 target)")
    write_json(
        args.json,
        {
            "benchmark": "lightning_vs_plain",
            "machine": machine(),
            "settings": {
                **{k: v for k, v in vars(args).items() if k != "json"},
                "threads": threads,
                "tokens_per_step": tokens_per_step,
            },
            "results": rows,
            "runs": runs,
            "lightning_over_plain": ratio,
            "final_loss_spread": loss_spread,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
