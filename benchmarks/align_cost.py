"""What does aligning N images cost against generating N images with a diffusion sampler?

The alignment paper makes its fakes by one autoencoder pass per real image (encode,
sample the posterior, decode) instead of running a text-to-image sampler, and claims
this is about 10x cheaper. This script measures the ratio on the hardware it runs on.

Models are built from configs with RANDOM weights (no download): cost does not depend
on the weights' values. The architecture is CompVis/ldm-text2im-large-256's
(UNet2DConditionModel, 4 x 32 x 32 latents, blocks 320/640/1280/1280, cross-attention
width 1280; KL autoencoder 128/256/512/512, factor 8) or SD 1.5's at 512 px, with every
channel width divided by --width-div so that a CPU can run the full 50-step loop.
Dividing every width by the same number keeps the two models' costs in proportion
(convolutions and linear layers both scale with width squared; depths, resolutions,
token counts and step counts stay as they are), so the ratio is meaningful; absolute
times are not those of the real models. --width-div 1 builds the real-size models (GPU).

Generation = K DDIM steps with classifier-free guidance (two UNet evaluations per step,
batched, as diffusers pipelines do; --no-guidance for one) + one VAE decode; the text encoder (one forward per
prompt) is not counted, which favours generation. Alignment = VAE encode + posterior
sample + decode at the same resolution. Both at batch size 1; median of --repeats.

    python benchmarks/align_cost.py                      # ldm256, width/8, DDIM 50, CPU
    python benchmarks/align_cost.py --preset sd15 --width-div 1 --device cuda --dtype fp16

Writes benchmarks/results/align_cost[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

PRESETS = {
    # CompVis/ldm-text2im-large-256: the alignment paper's default autoencoder (blocks as in its diffusers vae config)
    # and its generator (UNet widths as in its diffusers config as we know it; not re-checked offline)
    "ldm256": {"resolution": 256, "unet_blocks": (320, 640, 1280, 1280), "cross_dim": 1280, "head_dim": 8,
               "vae_blocks": (128, 256, 512, 512), "guidance": True, "tokens": 77},
    # Stable Diffusion 1.5 at 512 px
    "sd15": {"resolution": 512, "unet_blocks": (320, 640, 1280, 1280), "cross_dim": 768, "head_dim": 8,
             "vae_blocks": (128, 256, 512, 512), "guidance": True, "tokens": 77},
}


def build(preset: dict, div: int):
    unet_blocks = tuple(c // div for c in preset["unet_blocks"])
    vae_blocks = tuple(c // div for c in preset["vae_blocks"])
    groups = math.gcd(32, *vae_blocks, *unet_blocks)  # 32 at real size
    factor = 2 ** (len(vae_blocks) - 1)
    latent = preset["resolution"] // factor
    heads = max(1, preset["head_dim"])  # diffusers' attention_head_dim is the number of heads for these configs
    unet_cfg = dict(
        sample_size=latent, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=unet_blocks, cross_attention_dim=preset["cross_dim"] // div,
        attention_head_dim=heads, norm_num_groups=groups,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae_cfg = dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=vae_blocks,
        down_block_types=("DownEncoderBlock2D",) * len(vae_blocks), up_block_types=("UpDecoderBlock2D",) * len(vae_blocks),
        norm_num_groups=groups, sample_size=preset["resolution"],
    )
    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_cfg), AutoencoderKL(**vae_cfg), unet_cfg, vae_cfg, latent


def params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def generate(unet, vae, sched, steps, latent, text, guidance, device, dtype):
    g = torch.Generator(device="cpu").manual_seed(0)
    lat = torch.randn((1, 4, latent, latent), generator=g).to(device, dtype)
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = torch.cat([lat, lat]) if guidance else lat
        eps = unet(x, t, encoder_hidden_states=text).sample
        if guidance:
            uncond, cond = eps.chunk(2)
            eps = uncond + 6.0 * (cond - uncond)
        lat = sched.step(eps, t, lat).prev_sample
    return vae.decode(lat / 0.18215).sample


@torch.inference_mode()
def align(vae, image):
    g = torch.Generator(device="cpu").manual_seed(0)
    post = vae.encode(image).latent_dist
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(post.mean.device, post.mean.dtype)
    return vae.decode(z).sample


def count_flops(preset: dict, div: int, steps: int) -> dict:
    """Matmul/conv/attention FLOPs (torch's FlopCounterMode; norms and activations not counted) of one
    image's generation and alignment, on meta tensors: free even for the real-size models."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet, vae, _, _, latent = build(preset, div)
        n = 2 if preset["guidance"] else 1
        lat = torch.randn(n, 4, latent, latent)
        text = torch.randn(n, preset["tokens"], preset["cross_dim"] // div)
        img = torch.randn(1, 3, preset["resolution"], preset["resolution"])
        t = torch.tensor(500)

    def flops(fn):
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops()

    unet_step = flops(lambda: unet(lat, t, encoder_hidden_states=text))
    enc = flops(lambda: vae.encode(img))
    dec = flops(lambda: vae.decode(lat[:1]))
    gen = steps * unet_step + dec
    return {"width_div": div, "unet_step_gflops": unet_step / 1e9, "vae_encode_gflops": enc / 1e9,
            "vae_decode_gflops": dec / 1e9, "generate_gflops": gen / 1e9, "align_gflops": (enc + dec) / 1e9,
            "ratio_generate_over_align": gen / (enc + dec),
            # the same sampler without classifier-free guidance: one UNet evaluation per step
            "ratio_without_guidance": (steps * unet_step / (2 if preset["guidance"] else 1) + dec) / (enc + dec),
            "ratio_with_guidance": (steps * unet_step * (1 if preset["guidance"] else 2) + dec) / (enc + dec)}


def timed(fn, repeats, device, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def render_md(r: dict, stem: str) -> str:
    s, f, fr = r["settings"], r["flops"]["as_timed"], r["flops"]["real_size"]
    ex = r.get("extrapolated")
    ratio = ex["ratio_generate_over_align"] if ex else r["ratio_generate_over_align"]
    steps = ex["steps"] if ex else s["steps"]
    lines = [
        f"# Alignment cost vs generation ({s['preset']}, channel widths / {s['width_div']}, {s['device']} {s['dtype']})",
        "",
        f"| | seconds / image (median of {s['repeats']}) |",
        "|---|---|",
        f"| align: VAE encode + posterior sample + decode, {s['resolution']} px | {r['align_seconds_per_image']:.3f} |",
        f"| generate: {s['sampler']} + VAE decode | {r['generate_seconds_per_image']:.3f} |",
        f"| of which one sampler step | {r['seconds_per_sampler_step']:.3f} |",
        f"| of which the VAE decode | {r['decode_seconds']:.3f} |",
    ]
    if ex:
        lines.append(f"| generate, extrapolated to {steps} steps | {ex['generate_seconds_per_image']:.3f} |")
    lines += [
        "",
        f"**Measured: generating one image ({steps} DDIM steps{', CFG' if s.get('guidance', True) else ''}) "
        f"costs {ratio:.1f}x aligning one** (the paper claims about 10x)"
        + (f"; the {s['steps']}-step run itself measured {r['ratio_generate_over_align']:.1f}x, and a sampler's cost "
           f"is linear in its steps." if ex else "."),
        "",
        f"Counted FLOPs for {r['flops']['steps']} steps (matmul, conv and attention; torch FlopCounterMode): "
        f"{f['ratio_generate_over_align']:.1f}x for the models timed here; **{fr['ratio_with_guidance']:.1f}x with "
        f"and {fr['ratio_without_guidance']:.1f}x without classifier-free guidance for the real-size models** "
        f"(align {fr['align_gflops'] / 1e3:.2f} TFLOPs per image). Where the measured ratio exceeds the counted one, "
        f"the UNet runs at fewer FLOP/s than the autoencoder's large convolutions on this hardware.",
        "",
        f"UNet {r['models']['unet_params'] / 1e6:.2f}M and VAE {r['models']['vae_params'] / 1e6:.2f}M parameters, "
        f"random weights (cost does not depend on their values); configs in `{stem}.json`. Text encoder not counted. "
        f"Machine: {r['machine']['platform']}, {r['machine']['cpu_count']} CPUs, {r['machine']['torch_threads']} torch "
        f"threads, torch {r['machine']['torch']}"
        + (f", GPU {r['machine']['gpu']}" if r["machine"].get("gpu") else "") + ".",
        "",
    ]
    if r.get("note"):
        lines += [f"Note: {r['note']}", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="ldm256")
    ap.add_argument("--width-div", type=int, default=8, help="divide every channel width by this (1 = real size)")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--extrapolate-to", type=int, default=None,
                    help="also report the ratio for this many steps from the measured per-step time "
                         "(for real-size models on a CPU: time 3 steps, report 50)")
    ap.add_argument("--no-guidance", action="store_true",
                    help="one UNet evaluation per step (LDMTextToImagePipeline's default guidance_scale=1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", default="", help="a remark stored with the result (e.g. load on the machine)")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the markdown of an earlier result")
    a = ap.parse_args(argv)
    if a.render:
        path = Path(a.render)
        md = render_md(json.loads(path.read_text()), path.stem)
        path.with_suffix(".md").write_text(md)
        print(md)
        return None

    preset = dict(PRESETS[a.preset], guidance=not a.no_guidance)
    device = torch.device(a.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    unet, vae, unet_cfg, vae_cfg, latent = build(preset, a.width_div)
    unet.to(device, dtype).eval()
    vae.to(device, dtype).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False)
    n_text = 2 if preset["guidance"] else 1
    text = torch.randn(n_text, preset["tokens"], preset["cross_dim"] // a.width_div).to(device, dtype)
    image = (torch.rand(1, 3, preset["resolution"], preset["resolution"]) * 2 - 1).to(device, dtype)

    print(f"UNet {params(unet) / 1e6:.1f}M params, VAE {params(vae) / 1e6:.1f}M params, "
          f"{preset['resolution']}px, latent {latent}x{latent}, {a.steps} DDIM steps, {device} {a.dtype}", file=sys.stderr)
    t_align = timed(lambda: align(vae, image), a.repeats, device)
    print(f"align: {statistics.median(t_align):.3f} s/img", file=sys.stderr)
    t_gen = timed(lambda: generate(unet, vae, sched, a.steps, latent, text, preset["guidance"], device, dtype),
                  a.repeats, device)
    print(f"generate: {statistics.median(t_gen):.3f} s/img", file=sys.stderr)

    t_dec = timed(lambda: vae.decode(torch.zeros(1, 4, latent, latent, device=device, dtype=dtype)), a.repeats, device)
    med_a, med_g = statistics.median(t_align), statistics.median(t_gen)
    med_d = statistics.median(t_dec)
    per_step = (med_g - med_d) / a.steps
    extra = {}
    if a.extrapolate_to:  # sampler cost is linear in steps: every step is one identical UNet (CFG) call
        gen_n = a.extrapolate_to * per_step + med_d
        extra = {"extrapolated": {"steps": a.extrapolate_to, "generate_seconds_per_image": gen_n,
                                  "ratio_generate_over_align": gen_n / med_a,
                                  "method": f"(median generate - median decode) / {a.steps} steps = seconds per step; "
                                            f"x {a.extrapolate_to} + decode"}}
    report_steps = a.extrapolate_to or a.steps
    flops_run = count_flops(preset, a.width_div, report_steps)
    flops_real = count_flops(preset, 1, report_steps)
    result = {
        "note": a.note,
        "question": "cost of aligning N images (VAE encode+sample+decode) vs generating N images (DDIM sampler)",
        "ratio_generate_over_align": med_g / med_a,
        "align_seconds_per_image": med_a,
        "generate_seconds_per_image": med_g,
        "decode_seconds": med_d,
        "seconds_per_sampler_step": per_step,
        **extra,
        "align_times": t_align,
        "generate_times": t_gen,
        "settings": {
            "preset": a.preset, "guidance": preset["guidance"], "steps": a.steps, "width_div": a.width_div, "resolution": preset["resolution"], "latent": latent,
            "sampler": f"DDIM {a.steps} steps" + (", classifier-free guidance (2 UNet evals/step, batched)"
                                                  if preset["guidance"] else ""),
            "text_encoder": "not counted", "batch": 1, "repeats": a.repeats, "statistic": "median",
            "device": str(device), "dtype": a.dtype, "weights": "random (cost does not depend on weight values)",
        },
        "flops": {"steps": report_steps, "as_timed": flops_run, "real_size": flops_real,
                  "note": "FlopCounterMode: matmul, conv and attention FLOPs; norms and activations not counted"},
        "models": {"unet_params": params(unet), "vae_params": params(vae),
                   "unet_config": unet_cfg, "vae_config": vae_cfg},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "align_cost" + (f"-{a.tag}" if a.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=list) + "\n")
    md = render_md(result, stem)
    (out / f"{stem}.md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
