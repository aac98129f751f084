"""How fast is the runtime's caption tokenizer, against open_clip's own in the same run?

Captions: realistic alt-text-like sentences (5 to 60 words, seeded; a few with accents, emoji
and HTML entities). For each batch size, the median over --repeats of:
  fakedet     CaptionTokenizer.encode (ftfy + html cleaning in Python, HF tokenizers BPE)
  clean only  the Python cleaning step alone (ftfy, html.unescape x2, whitespace, lower)
each as wall time and as CPU time of the process (the tokenizer runs on one thread unless
TOKENIZERS_PARALLELISM says otherwise).
  open_clip   open_clip.get_tokenizer("ViT-B-32")(captions) (the baseline, SimpleTokenizer)
Both tokenizers are warm (their BPE caches filled by a first call), as in a server. The ids
are checked equal before timing.

    python benchmarks/caption_tokenizer.py [--repeats 200] [--tag NAME]

Writes benchmarks/results/caption_tokenizer[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

WORDS = ("a photo of the dog cat man woman child car street city night sunset beach mountain "
         "red blue green old young small large happy running sitting on in with near under next to "
         "playing holding wearing looking at painting portrait close-up view aerial 4k hdr").split()
EXTRAS = ["café", "naïve", "東京", "😍", "👍🏽", "&amp;", "it's", "don't", "“quoted”", "2024", "#art"]


def make_captions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 60))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), rng.choice(EXTRAS))
        out.append(" ".join(words).capitalize() + ".")
    return out


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (process) milliseconds of one call; on a shared machine the wall
    time carries other processes' time slices, the CPU time does not."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    import numpy as np
    import open_clip

    from fakedet.runtime.caption_tokenizer import (CaptionTokenizer, build_clip_tokenizer_json, clean_caption,
                                                   open_clip_vocab_path)
    from serve_load import cpu_name

    t = time.perf_counter()
    text = build_clip_tokenizer_json(open_clip_vocab_path())
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    tok = CaptionTokenizer.from_json(text)
    load_s = time.perf_counter() - t
    reference = open_clip.get_tokenizer("ViT-B-32")

    rows = []
    for batch in (1, 64, 256):
        captions = make_captions(batch, seed=batch)
        assert np.array_equal(tok.encode(captions), reference(captions).numpy()), "ids differ from open_clip"
        ours, ours_cpu = median_ms(lambda: tok.encode(captions), args.repeats)
        clean, clean_cpu = median_ms(lambda: [clean_caption(c) for c in captions], args.repeats)
        base, base_cpu = median_ms(lambda: reference(captions), args.repeats)
        rows.append({"batch": batch, "words": sum(len(c.split()) for c in captions),
                     "fakedet_ms": ours, "fakedet_cpu_ms": ours_cpu, "clean_ms": clean, "clean_cpu_ms": clean_cpu,
                     "open_clip_ms": base, "open_clip_cpu_ms": base_cpu, "speedup_cpu": base_cpu / ours_cpu})
        print(f"batch {batch:4d}: fakedet {ours:.3f} ms wall / {ours_cpu:.3f} ms CPU (cleaning {clean_cpu:.3f} CPU), "
              f"open_clip {base:.3f} / {base_cpu:.3f}, CPU ratio x{base_cpu / ours_cpu:.2f}", flush=True)

    import ftfy
    import tokenizers

    result = {"cpu": cpu_name(), "repeats": args.repeats, "json_build_s": build_s, "json_load_s": load_s,
              "json_bytes": len(text.encode()), "tokenizers": tokenizers.__version__, "ftfy": ftfy.__version__,
              "open_clip": open_clip.__version__, "rows": rows}
    name = "caption_tokenizer" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Caption tokenizer: fakedet (HF tokenizers) vs open_clip, {result['cpu']}", "",
             f"Median of {args.repeats} warm calls; `python benchmarks/caption_tokenizer.py`. "
             f"tokenizers {result['tokenizers']}, ftfy {result['ftfy']}, open_clip {result['open_clip']}. "
             f"Building the tokenizer JSON: {build_s:.2f} s ({result['json_bytes'] / 1e6:.2f} MB); "
             f"loading it: {load_s * 1e3:.0f} ms.", "",
             "Wall time includes other processes' time slices on a shared machine; CPU time does not.", "",
             "| captions (words) | fakedet wall ms | fakedet CPU ms | of which cleaning CPU ms | "
             "open_clip wall ms | open_clip CPU ms | open_clip / fakedet (CPU) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} ({r['words']}) | {r['fakedet_ms']:.3f} | {r['fakedet_cpu_ms']:.3f} | "
              f"{r['clean_cpu_ms']:.3f} | {r['open_clip_ms']:.3f} | {r['open_clip_cpu_ms']:.3f} | "
              f"{r['speedup_cpu']:.2f} |" for r in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
