"""Continue training a charlm model with PyTorch: one process, or many under torchrun (DistributedDataParallel).

    python3 python/train.py --init EXPORT --out OUT --steps 1000                     # one process
    torchrun --standalone --nproc_per_node=N python/train.py --init EXPORT --out OUT --steps 1000
    charlm import OUT --out runs/more                                                # back to charlm

EXPORT comes from `charlm export DIR --to torch EXPORT` (or an earlier run of this script); OUT is an export too.
The corpus and tokenizer are the export's: --data defaults to the training config stored in it, and the text is
encoded with its vocabulary ("<unk>" for pruned characters). GPUs use NCCL, CPUs gloo.

Each step draws one global batch of --batch-size random windows of --seq-length characters from a generator seeded
by --seed and the export's step; rank r of N trains on rows [r*B/N, (r+1)*B/N) and DDP averages the gradients, so
N processes take the same steps as one process on the whole batch (up to float rounding). Adam, continuing from the
export's moments and step count when it carries them (a charlm run with Adam does; otherwise it starts afresh, and
--warmup softens its first large steps), global-norm clipping, a constant learning rate.
The loss of every --log-every step is printed as one JSON line, {"step": s, "loss": nats per character}.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import charlm_torch as ct  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="export directory to start from")
    p.add_argument("--out", required=True, help="export directory to write (charlm import reads it)")
    p.add_argument("--data", help="corpus as charlm names it: FILE, DIR, tinyshakespeare:FILE (default: the export's)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps to take")
    p.add_argument("--batch-size", type=int, help="windows per step over all processes (default: the export's)")
    p.add_argument("--seq-length", type=int, help="characters per window (default: the export's)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the export's)")
    p.add_argument("--warmup", type=int, default=0, help="raise the learning rate linearly over N steps (0 = none)")
    p.add_argument("--clip", type=float, help="clip gradients to this global norm, 0 = off (default: the export's)")
    p.add_argument("--seed", type=int, default=1, help="seeds the batches (and dropout, per process)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: one GPU per process, NCCL")
    p.add_argument("--tf32", action="store_true", help="cuda: allow TF32 matrix products (faster, about 3 digits)")
    p.add_argument("--log-every", type=int, default=1, help="print the loss every N steps")
    p.add_argument("--save-every", type=int, default=0, help="also write OUT every N steps (0 = at the end only)")
    p.add_argument("--print-batches", action="store_true", help="print each step's window starts (for charlm's tests)")
    p.add_argument("--eval-chars", type=int, default=0, help="validation characters scored at start and end (0 = none)")
    return p.parse_args()


def main():
    args = parse_args()
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("train.py: --device cuda but torch sees no GPU; use --device cpu or a CUDA build of torch")
        torch.cuda.set_device(local_rank)
        # float32 by default, as charlm computes: TF32 would round the products' inputs to 10-bit mantissas.
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    device = torch.device(f"cuda:{local_rank}" if args.device == "cuda" else "cpu")
    if world > 1:
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    say = print if rank == 0 else (lambda *a, **k: None)

    manifest, model, moments = ct.read_export(args.init)
    cfg, saved = manifest["model"], manifest.get("train") or {}
    data = args.data or saved.get("data")
    if not data:
        sys.exit(f"train.py: {args.init} names no corpus; pass --data FILE")
    B = args.batch_size or saved.get("batchSize", 32)
    T = args.seq_length or saved.get("seqLength", 100)
    lr = args.lr if args.lr is not None else saved.get("lr", 2e-3)
    clip = args.clip if args.clip is not None else saved.get("clip", 5.0)
    if B % world:
        sys.exit(f"train.py: --batch-size {B} does not split over {world} processes; use a multiple of {world}")
    if cfg["type"] == "gpt" and T > cfg["blockSize"]:
        sys.exit(f"train.py: --seq-length {T} exceeds the GPT's context of {cfg['blockSize']}; use at most that")
    train_text, val_text = ct.load_splits(data, saved.get("validationFraction", 0.1))
    tok = ct.Tokenizer(manifest["vocab"])
    ids = tok.encode(train_text, data)
    if len(ids) < T + 1:
        sys.exit(f"train.py: {data} has {len(ids)} training characters, under one window of {T + 1}; lower --seq-length")

    torch.manual_seed(args.seed * 1000 + rank)  # dropout draws: different in every process
    model.to(device)
    net = DDP(model, device_ids=[local_rank] if args.device == "cuda" else None) if world > 1 else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = ct.make_adam(model, manifest, moments, lr)  # after model.to(device): the moments follow the parameters
    V = cfg["vocabSize"]
    start = manifest.get("step", 0)
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + start)  # same in every process: one global batch
    rows = slice(rank * B // world, (rank + 1) * B // world)
    offsets = torch.arange(T)

    def evaluate():
        vids = tok.encode(val_text[: args.eval_chars + 1], data)
        n = (len(vids) - 1) // T
        if n == 0:
            return float("nan")
        model.eval()
        with torch.no_grad():
            x = vids[: n * T].view(n, T).to(device)
            y = vids[1 : n * T + 1].view(n, T).to(device)
            loss = F.cross_entropy(model(x)[0].reshape(-1, V), y.reshape(-1))
        model.train()
        return float(loss)

    run = dict(init=args.init, step=start, world=world, device=str(device), B=B, T=T, lr=lr, torch=torch.__version__)
    say(json.dumps(run))
    if args.eval_chars and rank == 0:
        say(json.dumps({"step": start, "val_loss": evaluate()}))
    model.train()
    t0 = None
    for i in range(1, args.steps + 1):
        starts = torch.randint(0, len(ids) - T, (B,), generator=gen)  # (B,): the global batch
        if args.print_batches:
            say(json.dumps({"step": start + i, "starts": starts.tolist()}))
        window = starts[rows, None] + offsets  # (B/N, T): this process's rows
        x, y = ids[window].to(device, non_blocking=True), ids[window + 1].to(device, non_blocking=True)
        logits, _ = net(x)  # (B/N, T, V)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        if args.warmup:
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, i / args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if i % args.log_every == 0 or i == args.steps:
            shown = loss.detach()
            if world > 1:
                dist.all_reduce(shown)  # the mean over the global batch: each process has the mean of its rows
                shown /= world
            say(json.dumps({"step": start + i, "loss": round(float(shown), 7)}))
        if i == 1:  # time from the end of the first step: it pays for allocations and kernel choices
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        if args.save_every and i % args.save_every == 0 and i < args.steps and rank == 0:
            ct.write_export(args.out, manifest, model, start + i, "python/train.py", opt)
    if args.device == "cuda":
        torch.cuda.synchronize()
    if args.steps > 1:
        sec = (time.perf_counter() - t0) / (args.steps - 1)
        timing = dict(ms_per_step=round(sec * 1000, 3), chars_per_s=round(B * T / sec), timed_steps=args.steps - 1)
        say(json.dumps(timing))
    if rank == 0:
        if args.eval_chars:
            say(json.dumps({"step": start + args.steps, "val_loss": evaluate()}))
        ct.write_export(args.out, manifest, model, start + args.steps, "python/train.py", opt)
        say(json.dumps({"wrote": args.out, "step": start + args.steps}))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except ct.ExportError as e:
        sys.exit(f"train.py: {e}")
