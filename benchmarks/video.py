"""Frames/s of the photo/video path (detect, align, invert, reenact), JAX batches vs the official per-image path.

    python -m benchmarks.video                          # 1024 layout, JAX batches 8 and 1, 2 passes
    python -m benchmarks.video --size 256 --passes 1 --iters 1     # a quick check

Random weights (speed does not depend on them), float32, 12 controlled layers, truncation 0.7:
the generator of `--size` (rosinality layout), its mask network, e4e with the matching number of
W+ codes. One source face, reenacted with every driving frame as the target. Per frame:

  detector  shared by both paths, timed once: dlib landmarks (`LandmarkDetector`, full frame,
            one up-sampling) + the FFHQ crop (`align_face`) of a `--frame` photo. The official
            path uses FAN landmarks (face_alignment) instead, which is not installed here; the
            table adds this dlib cost to both sides for the end-to-end figures.
  jax       what `stylemask_jax.photos.driving.reenact_video` does per batch of B aligned crops:
            e4e inversion of the uint8 crops (`inversion.make_invert_fn`: u / 255 * 2 - 1),
            the official row-wise truncation (`reenact.make_encode_fn(gen, 'wplus', 0.7)`), the
            reenactment of the source with each crop as the target, synthesising only the
            reenacted images (`reenact.make_reenact_fn(outputs='reenacted')`), and the 1024
            frames as uint8 on the host. The source W+ is computed once, before timing.
  jax-whole-batch  (only with --impls) the same with the whole batch through e4e and the
            generator at once (`make_invert_fn(chunk=None)`, `make_reenact_fn(chunk=None)`): the
            formulation before chunked inversion and synthesis.
  torch official  the official per-image path (run_inference.py of StelaBou/StyleMask with
            libs/utilities/utils_inference.py), one frame per call, in the PyTorch formulations
            of stylemask_jax/reference (stylegan2.py: per-sample weights, grouped convs;
            stylemask.py: the mask network; irse.py: `TorchE4E`, the layout `build_e4e` loads):
            `invert_image` of the frame's crop = e4e codes + the inverted image (a truncated
            1024 synthesis the loop does not use), then `reenact_pair(source, frame)` = truncated
            W+ and style codes of both, the source image and the target image, the masks, the
            mixed style codes and the reenacted image, each image pooled to 256 (`face_pool`);
            the reenacted 256 image as uint8. The official loop also re-inverts the source for
            every pair (another e4e + synthesis); that is left out here (cached, as in our path),
            which favours the official side.
  torch reenacted-only  the same work as the JAX path, per frame in torch: e4e, truncation,
            style codes, masks, mixing and the reenacted 1024 image only (like for like).

Each (implementation, batch) runs in its own worker process (JAX and torch in one process slow
torch down: see benchmarks/reenact.py on branch speed), in A B C, C B A, ... order over the
passes. A worker makes one untimed call (JAX: after lowering and compiling the three functions;
it gives compile s and time to first frame), `--warmup` - 1 more, then `--iters` timed calls
(wall and process CPU time). Figures pool the timed calls of all passes (medians).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from benchmarks import harness

MODULE = "benchmarks.video"
JAX_WHOLE = "jax-whole-batch"  # the photo/video path without chunked inversion and synthesis
NUM_CONTROL, TRUNCATION = 12, 0.7
FRAME = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "align", "astronaut.png")


def random_crops(n: int, seed: int) -> np.ndarray:
    """uint8 (n, 256, 256, 3) stand-ins for aligned crops (the speed does not depend on pixels)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)


def build_jax(size: int, batch: int, whole: bool = False):
    """(call() -> uint8 frames (B, size, size, 3), compile seconds, XLA memory of the reenactment).
    `whole`: the batch through e4e and the generator at once (`chunk=None`), the formulation
    before `inversion.encoder_chunk` and `reenact.synthesis_chunk`."""
    import jax
    import jax.numpy as jnp
    from stylemask_jax.images import to_uint8
    from stylemask_jax.models.e4e import init_e4e, n_styles_for
    from stylemask_jax.models.mask_net import MaskNet, init_mask_net
    from stylemask_jax.models.stylegan2 import Generator, init_variables, mean_latent
    from stylemask_jax.inversion import make_invert_fn
    from stylemask_jax.reenact import make_encode_fn, make_reenact_fn

    gen = Generator.from_arch(harness.arch_for(size))
    gvars = jax.jit(lambda key: init_variables(gen, key))(jax.random.key(0))
    mask_net = MaskNet(tuple(gen.style_dims[:NUM_CONTROL]))
    mvars = init_mask_net(mask_net, jax.random.key(1))
    encoder, evars = init_e4e(jax.random.key(2), n_styles=n_styles_for(size))
    mean = jax.jit(lambda v: mean_latent(gen, v, jax.random.key(3)))(gvars)
    invert = make_invert_fn(encoder, chunk=None if whole else "auto")
    encode = make_encode_fn(gen, "wplus", TRUNCATION)
    reenact = make_reenact_fn(gen, mask_net, outputs="reenacted", chunk=None if whole else "auto")
    src = jnp.repeat(encode(gvars, invert(evars, random_crops(1, 0)), mean), batch, axis=0)
    crops = random_crops(batch, 1)
    jax.block_until_ready((gvars, mvars, evars, mean, src))

    start = time.perf_counter()
    invert_c = invert.lower(evars, crops).compile()
    codes = jax.ShapeDtypeStruct(src.shape, jnp.float32)
    encode_c = encode.lower(gvars, codes, mean).compile()
    reenact_c = reenact.lower(gvars, mvars, src, codes).compile()
    compile_s = time.perf_counter() - start

    def call():
        tgt = encode_c(gvars, invert_c(evars, crops), mean)
        return to_uint8(jax.device_get(reenact_c(gvars, mvars, src, tgt)))
    return call, compile_s, harness.xla_memory(reenact_c)


def build_torch(size: int, official: bool):
    """call() -> the uint8 output frame of one driving crop (official: 256 pooled, else size)."""
    import torch
    import torch.nn.functional as F
    from stylemask_jax.models.e4e import n_styles_for
    from stylemask_jax.reference.irse import TorchE4E
    from stylemask_jax.reference.stylemask import mix_styles

    harness.set_torch_threads()
    gen, mask_net, mean = harness.torch_stylemask(size, NUM_CONTROL)
    e4e = TorchE4E(n_styles_for(size)).eval()

    def to_tensor(crop):  # the official image_to_tensor: u / 255 * 2 - 1, CHW
        return torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0 * 2.0 - 1.0

    def image(styles, wplus):
        out = gen.synthesize(styles, wplus)
        return F.adaptive_avg_pool2d(out, 256) if official else out

    with torch.no_grad():
        source_codes = e4e(to_tensor(random_crops(1, 0)[0]))
    crop = random_crops(1, 1)[0]

    def call():
        with torch.no_grad():
            codes = e4e(to_tensor(crop))
            w_tgt = gen.wplus(codes, "wplus", TRUNCATION, mean)
            if official:  # invert_image's inverted image (unused by the loop)
                gen.synthesize(gen.style_codes(w_tgt), w_tgt)
            w_src = gen.wplus(source_codes, "wplus", TRUNCATION, mean)
            s_src, s_tgt = gen.style_codes(w_src), gen.style_codes(w_tgt)
            if official:  # reenact_pair's source and target images
                image(s_src, w_src), image(s_tgt, w_tgt)
            reenacted = image(mix_styles(mask_net(s_src, s_tgt), s_src, s_tgt), w_src)
            out = ((reenacted.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            return out.permute(0, 2, 3, 1).numpy()
    return call


def build_detector(frame_path: str):
    """call() -> the aligned crop of the frame (dlib landmarks + FFHQ alignment); frame size."""
    from stylemask_jax.photos import LandmarkDetector, align_face, load_photo
    detector, frame = LandmarkDetector(), load_photo(frame_path)
    return (lambda: align_face(frame, detector.detect(frame))[0]), frame.shape[:2]


def worker_run(spec: dict) -> dict:
    out = {"load_begin": harness.load_average()}
    start = time.perf_counter()
    if spec["lib"] in ("jax", JAX_WHOLE):
        call, out["compile_s"], memory = build_jax(spec["size"], spec["batch"], spec["lib"] == JAX_WHOLE)
        out.update(memory)
    elif spec["lib"] == "detector":
        call, out["frame_hw"] = build_detector(spec["frame"])
    else:
        call = build_torch(spec["size"], spec["lib"] == "torch-official")
    out["build_s"] = time.perf_counter() - start
    with harness.RssSampler() as rss:
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
    out.update(first_s=first, first_frame_s=first + out.get("compile_s", 0.0), rss_peak=rss.peak_delta)
    timing = harness.time_calls(call, max(spec["warmup"] - 1, 0), spec["iters"])
    return dict(out, times=timing["times_s"], cpu=timing["cpu_times_s"])


WORKERS = {"run": worker_run}


# -- parent ----------------------------------------------------------------------------------

LABELS = {"jax": "JAX batch", JAX_WHOLE: "JAX whole batch", "torch-official": "torch official per-image path",
          "torch-reenacted": "torch reenacted-only per frame", "detector": "dlib landmarks + align (shared)"}


def configurations(args) -> list[tuple[str, int]]:
    configs = [(lib, b) for lib in ("jax", JAX_WHOLE) if lib in args.impls for b in args.batches]
    configs += [(lib, 1) for lib in ("torch-official", "torch-reenacted") if lib in args.impls]
    return configs + ([("detector", 1)] if "detector" in args.impls else [])


def run_all(args):
    results = {}
    for lib, batch in harness.alternating(configurations(args), args.passes):
        spec = dict(impl="run", lib=lib, size=args.size, batch=batch, frame=args.frame,
                    warmup=args.warmup, iters=args.iters)
        results.setdefault((lib, batch), []).append(harness.run_worker(MODULE, spec, args.timeout))
    print(report(args, results))


def report(args, results: dict) -> str:
    sm = {}
    for (lib, batch), runs in results.items():
        first = next((r for r in runs if "first_s" in r), {})
        errors = "; ".join(sorted({r["error"] for r in runs if "error" in r}))
        sm[lib, batch] = dict(first, **harness.pooled_medians(runs, batch), note=errors,
                              loads=[r.get("load_start") for r in runs])
    det = sm.get(("detector", 1), {})
    official, lean = sm.get(("torch-official", 1), {}), sm.get(("torch-reenacted", 1), {})

    def ratio(ref, s, key, extra=0.0):
        if not (ref.get(key) and s.get(key)):
            return None
        return (ref[key] + extra) / (s[key] + extra)

    rows = []
    for (lib, batch), s in sm.items():
        name = LABELS[lib] + (f" {batch}" if lib.startswith("jax") else "")
        model = lib != "detector"
        d_wall, d_cpu = (det.get("median") or 0.0), (det.get("cpu_median") or 0.0)
        e2e = s.get("median") and 1 / (s["median"] + d_wall) if model and det.get("median") else None
        cells = ["-", "-", "-"]
        if lib != "detector" and lib != "torch-official":
            cells[0] = " / ".join(harness.times(ratio(official, s, k)) for k in ("median", "cpu_median"))
            cells[1] = " / ".join(harness.times(ratio(official, s, k, x)) for k, x in
                                  (("median", d_wall), ("cpu_median", d_cpu))) if det.get("median") else "-"
        if lib.startswith("jax"):
            cells[2] = " / ".join(harness.times(ratio(lean, s, k)) for k in ("median", "cpu_median"))
        rows.append([name, harness.fmt(s.get("compile_s")), harness.fmt(s.get("first_frame_s")),
                     harness.fmt(s.get("median"), ".3f"), harness.fmt(s.get("cpu_median"), ".3f"),
                     harness.fmt(s.get("median") and 1 / s["median"], ".3f"), harness.fmt(e2e, ".3f"),
                     s.get("n", 0), harness.mib(s.get("rss_peak")), harness.mib(s.get("xla_total")),
                     *cells, s["note"]])
    loads = [f"{LABELS[lib]}{f' {b}' if lib.startswith('jax') else ''}: {', '.join(map(str, s['loads']))}"
             for (lib, b), s in sm.items()]
    frame = det.get("frame_hw")
    out = [harness.machine_header(f"Photo/video path, {args.size} layout, float32, random weights, "
                                  f"{NUM_CONTROL} controlled layers, truncation {TRUNCATION}"),
           f"{args.passes} pass(es), each configuration in its own worker process (order alternating "
           f"pass by pass); per worker {max(args.warmup, 1)} untimed + {args.iters} timed call(s); "
           f"detector frame: {args.frame} ({frame[1]}x{frame[0]})" if frame else
           f"{args.passes} pass(es); detector not run",
           "load average (1/5/15 min) at the start of each worker:", *("  " + line for line in loads), ""]
    out.append(harness.markdown_table(
        ["path", "compile s", "first frame s", "median s/frame", "CPU s/frame", "frames/s (median)",
         "frames/s incl. detector", "timed calls", "RSS peak MiB", "XLA total MiB",
         "vs official (median / CPU)", "vs official incl. detector (median / CPU)",
         "vs torch reenacted-only (median / CPU)", "note"], rows))
    out += ["", "s/frame: seconds per call / frames per call (JAX: batch B; torch and detector: one "
                "frame per call), median over the timed calls of all passes; CPU: median process CPU "
                "time (all threads). Ratios: torch s/frame / JAX s/frame (above 1: JAX faster); "
                "'incl. detector' adds the shared dlib landmarks + align cost per frame to both sides. "
                "compile s: lowering + compiling the three JAX functions; first frame s: compile + the "
                "first call (the first batch of B frames is ready then; torch: the first call). RSS "
                "peak: worker RSS during the first call minus RSS before it. XLA total: the reenactment "
                "executable's memory_analysis() (weights + outputs + temporaries)."]
    return "\n".join(out)


def add_arguments(parser):
    parser.add_argument("--batches", type=harness.parse_ints, default=[8, 1],
                        help="JAX frames per call, comma-separated (default 8,1)")
    parser.add_argument("--size", type=int, default=1024,
                        help="generator layout (default 1024, FFHQ; smaller for a quick check)")
    parser.add_argument("--impls", type=harness.parse_choices(tuple(LABELS)),
                        default=[lib for lib in LABELS if lib != JAX_WHOLE],
                        help=f"{','.join(LABELS)} (default all but {JAX_WHOLE})")
    parser.add_argument("--frame", default=FRAME, help="photo the detector row is timed on")
    parser.add_argument("--passes", type=int, default=2, help="alternating passes (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per worker (default 1)")
    parser.add_argument("--iters", type=int, default=2, help="timed calls per worker and pass (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker")


def main(argv=None):
    return harness.main(__doc__, add_arguments, run_all, WORKERS, argv)


if __name__ == "__main__":
    sys.exit(main())
