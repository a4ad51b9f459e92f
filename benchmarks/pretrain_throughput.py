"""Pre-training throughput per backbone preset: training tokens/s and, on CUDA, model FLOPs
utilisation (MFU).

A token is one patch of one series (the unit ``tokens_seen`` counts in the trainer): a
window of context + masked future of W steps is W / patch_size tokens per series. One
training step is what the trainer does per batch, without Lightning around it:
``PretrainModule.masked_loss`` forward (under autocast for bf16-mixed), backward, gradient
clipping at 1.0, the module's own optimizer step (AdamW; the module's
``configure_optimizers``), zero_grad. Data are random tensors already on the device, so the
figure is the model's ceiling, not the input pipeline's.

Timing: ``--warmup`` steps first (not timed: allocator, autotuning, torch.compile), then
``--steps`` steps between two ``torch.cuda.synchronize()`` calls on CUDA.

FLOPs per step are counted once with ``torch.utils.flop_counter.FlopCounterMode`` on a real
batch of the same shape (forward + backward; matmuls and attention, which dominate;
causal attention is counted as full attention, the usual convention). MFU = FLOPs per step
x steps/s / the GPU's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s; detected from
``torch.cuda.get_device_name``, or ``--peak-tflops``). MFU is only reported for bf16-mixed
unless ``--peak-tflops`` is given.

Run (2-core CPU, about 1 minute):
    .venv/bin/python benchmarks/pretrain_throughput.py
    .venv/bin/python benchmarks/pretrain_throughput.py --presets tiny --steps 3 --warmup 1   # smoke test
On one GPU (defaults there: presets 4m,22m,313m,1b, context 4032 + horizon 64, batch 32, bf16-mixed):
    python benchmarks/pretrain_throughput.py --json out/throughput.json
    python benchmarks/pretrain_throughput.py --presets 313m --batch 64 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time

from bench_common import machine, markdown_table, warn_if_busy, write_json

# dense (no sparsity) bf16 tensor-core peaks from vendor datasheets, FLOP/s; first match wins
PEAK_BF16 = [
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 70e12),
]


def peak_flops(device_name: str | None) -> float | None:
    if not device_name:
        return None
    for key, value in PEAK_BF16:
        if key.lower() in device_name.lower():
            return value
    return None


def make_optimizer(module):
    """The module's own optimizer (what the trainer steps); AdamW when it needs a trainer."""
    import torch

    try:
        conf = module.configure_optimizers()
        if isinstance(conf, dict):
            conf = conf["optimizer"]
        elif isinstance(conf, (list, tuple)):
            conf = conf[0][0] if isinstance(conf[0], (list, tuple)) else conf[0]
            if isinstance(conf, dict):
                conf = conf["optimizer"]
        if isinstance(conf, torch.optim.Optimizer):
            return conf
    except Exception as exc:  # noqa: BLE001 - e.g. an optimizer choice that reads self.trainer
        print(f"note: configure_optimizers() failed outside a trainer ({exc!r}); using AdamW")
    return torch.optim.AdamW(module.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)


def masked_loss(module, batch):
    out = module.masked_loss(batch)
    return out[0] if isinstance(out, tuple) else out


def measure(preset: str, args, device) -> dict:
    import torch

    from models.backbone.presets import count_parameters, get_preset
    from models.pretraining.module import PretrainModule

    config = get_preset(preset)
    p = config.patch_size
    ctx, fut = math.ceil(args.context / p) * p, math.ceil(args.horizon / p) * p
    row = {"preset": preset, "params": count_parameters(config), "batch": args.batch, "window": ctx + fut}
    if ctx + fut > config.max_context:
        return {**row, "status": f"skipped: window {ctx + fut} > max_context {config.max_context}"}
    tokens_per_step = args.batch * args.variates * (ctx + fut) // p
    row["tokens_per_step"] = tokens_per_step

    torch.manual_seed(0)
    module = PretrainModule(
        config.to_dict(), future_length=fut, warmup_steps=1, max_steps=args.warmup + args.steps + 1
    ).to(device)
    module.train()
    optimizer = make_optimizer(module)
    # a random walk per series: realistic scales for the scaler, no data pipeline involved
    g = torch.Generator().manual_seed(0)
    values = torch.randn(args.batch, args.variates, ctx + fut, generator=g).cumsum(-1) + 10.0
    batch = {"values": values.to(device), "observed": torch.ones_like(values, dtype=torch.bool, device=device)}
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if args.precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    params = [q for q in module.parameters() if q.requires_grad]

    def forward_backward():
        with autocast:
            loss = masked_loss(module, batch)
        loss.backward()
        return loss

    # FLOPs of one forward + backward, counted on the real batch (before any compile)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        forward_backward()
    optimizer.zero_grad(set_to_none=True)
    flops_per_step = counter.get_total_flops()

    if args.compile:
        module.model = torch.compile(module.model)

    def step():
        loss = forward_backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        for _ in range(args.warmup):
            step()
        sync()
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        sync()
        seconds = time.perf_counter() - started
    except torch.OutOfMemoryError:
        return {**row, "status": "out of memory"}
    finally:
        if device.type == "cuda":
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30

    step_s = seconds / args.steps
    achieved = flops_per_step / step_s
    peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else (
            peak_flops(torch.cuda.get_device_name(device))
            if device.type == "cuda" and args.precision == "bf16-mixed"
            else None
        )
    )
    row.update(
        status="ok",
        step_ms=1000 * step_s,
        tokens_per_s=tokens_per_step / step_s,
        windows_per_s=args.batch * args.variates / step_s,
        gflop_per_step=flops_per_step / 1e9,
        flop_per_token=flops_per_step / tokens_per_step,
        achieved_tflops=achieved / 1e12,
        mfu=achieved / peak if peak else None,
        final_loss=float(loss.detach().float()),
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=None, help="comma separated (default: tiny,4m on CPU; 4m,22m,313m,1b on GPU)")
    ap.add_argument("--context", type=int, default=None, help="context steps (default 256 on CPU, 4032 on GPU)")
    ap.add_argument("--horizon", type=int, default=64, help="masked future steps")
    ap.add_argument("--batch", type=int, default=None, help="windows per step (default 16 on CPU, 32 on GPU)")
    ap.add_argument("--variates", type=int, default=1, help="series per window")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CPU, 30 on GPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on CPU, 10 on GPU)")
    ap.add_argument(
        "--precision",
        choices=["32-true", "bf16-mixed"],
        default=None,
        help="default: bf16-mixed on GPU, 32-true on CPU (as the trainer)",
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone (warm-up covers compiling)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the peak used for MFU")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    gpu = device.type == "cuda"
    args.presets = args.presets or ("4m,22m,313m,1b" if gpu else "tiny,4m")
    args.context = args.context or (4032 if gpu else 256)
    args.batch = args.batch or (32 if gpu else 16)
    args.steps = args.steps or (30 if gpu else 20)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 3)
    args.precision = args.precision or ("bf16-mixed" if gpu else "32-true")
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    warn_if_busy()
    from models.backbone.presets import PRESETS

    unknown = [n for n in args.presets.split(",") if n.strip() and n.strip() not in PRESETS]
    if unknown:
        ap.error(f"unknown preset(s) {', '.join(unknown)}; valid: {', '.join(PRESETS)}")
    info = machine()
    print(
        f"device {device} ({info['gpu'] or 'cpu'}), torch {info['torch']}, threads {torch.get_num_threads()}, "
        f"precision {args.precision}, context {args.context} + horizon {args.horizon}, batch {args.batch}, "
        f"steps {args.steps} (+{args.warmup} warm-up){', compiled' if args.compile else ''}",
        flush=True,
    )
    rows = []
    for preset in [s.strip() for s in args.presets.split(",") if s.strip()]:
        try:
            row = measure(preset, args, device)
        except torch.OutOfMemoryError:  # also while counting FLOPs, before the timed loop
            row = {"preset": preset, "status": "out of memory"}
        rows.append(row)
        if gpu:
            torch.cuda.empty_cache()  # the preset's model and optimizer state are gone with measure()
        extra = f"{row['tokens_per_s']:,.0f} tokens/s" if row.get("status") == "ok" else row["status"]
        print(f"  {preset}: {extra}", flush=True)
    columns = [
        ("preset", "preset", ""),
        ("params", "params", ",d"),
        ("tokens_per_step", "tokens/step", ",d"),
        ("step_ms", "step ms", ".1f"),
        ("tokens_per_s", "tokens/s", ",.0f"),
        ("windows_per_s", "windows/s", ",.1f"),
        ("gflop_per_step", "GFLOP/step", ",.2f"),
        ("achieved_tflops", "TFLOP/s", ".3f"),
        ("mfu", "MFU", ".1%"),
        ("status", "status", ""),
    ]
    if gpu:
        columns.insert(-1, ("peak_mem_gib", "peak GiB", ".2f"))
    if not any(r.get("mfu") for r in rows):
        columns = [c for c in columns if c[0] != "mfu"]
    print()
    print(markdown_table(rows, columns))
    write_json(
        args.json,
        {
            "benchmark": "pretrain_throughput",
            "machine": info,
            "device": str(device),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "results": rows,
        },
    )
    return 0 if all(r.get("status") == "ok" or r["status"].startswith("skipped") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
