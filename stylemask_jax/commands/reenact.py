"""`stylemask reenact`: source faces with the pose and expression of target faces.

    stylemask reenact --config tiny --out out/                     # random weights and codes
    stylemask reenact --generator G --mask-net M --sources codes_a.npy --targets codes_b.npy --out out/
    stylemask reenact --generator G --mask-net M --e4e E --sources me.jpg --targets pose.jpg --out out/
    stylemask reenact --generator G --mask-net M --e4e E --sources me.jpg --driving clip.mp4 --out out/

The rules for --sources/--targets: a file is a photo by its extension (.png, .jpg, .jpeg, .webp)
or codes (.npy); a folder holds only photos or only .npy files; sources and targets may be of
different kinds. Photos and --driving need --e4e. Every input is checked, and every photo read
and its face found, before any network loads; nothing is written before the outputs are ready.
"""

from __future__ import annotations

import argparse
import math
import os


from stylemask_jax.commands import library
from stylemask_jax.commands.models import load_inverter, load_models, tiny_photo_networks
from stylemask_jax.commands.args import (TRUNCATION_HELP, add_overwrite_argument,
                                         add_refine_arguments, at_least, check_new_output,
                                         clear_output, in_range, named_config, naming,
                                         status)
from stylemask_jax.errors import UserInputError

codes_lib = library("stylemask_jax.codes")
driving_lib = library("stylemask_jax.photos.driving")
jax = library("jax")
inference = library("stylemask_jax.inference")
inversion = library("stylemask_jax.inversion")
outputs = library("stylemask_jax.outputs")
pipeline = library("stylemask_jax.photos.pipeline")
video = library("stylemask_jax.photos.video")

ROLES = (("source", 0), ("target", 1))  # (role, its offset in the interleaved random codes)
TRACK_NAME = "track.csv"


class FacePoint(argparse.Action):
    """--face X,Y -> (x, y) floats; anything else is a one-line error."""

    def __call__(self, parser, namespace, value, option_string=None):
        try:
            x, y = (float(part) for part in value.split(","))
        except ValueError:
            raise UserInputError(f"{option_string} {value!r}: expected X,Y pixel coordinates, "
                                 "e.g. 320,180") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise UserInputError(f"{option_string} {value!r}: expected finite coordinates")
        setattr(namespace, self.dest, (x, y))


def add_arguments(p) -> None:
    models = p.add_argument_group("models (converted weights, or --config tiny for random weights)")
    models.add_argument("--generator", metavar="DIR", help="converted StyleGAN2 directory "
                        "(`stylemask convert stylegan2`)")
    models.add_argument("--mask-net", metavar="DIR", help="converted mask network directory "
                        "(`stylemask convert mask-net`)")
    models.add_argument("--config", default=None, help="'tiny': random weights, no files needed "
                        "(the images are noise, not faces); with photos or --driving, a small "
                        "random e4e too (no --e4e): every path runs without weights")
    codes = p.add_argument_group("sources and targets")
    codes.add_argument("--sources", metavar="PHOTO|NPY|DIR", help="source faces: a photo "
                       "(.png/.jpg/.jpeg/.webp: detected, FFHQ-aligned and inverted with --e4e), a "
                       ".npy file of Z (D,)/(B,D), W (B,D) or W+ (B,L,D) codes, or a folder of either "
                       "kind. Rule: a folder must hold only photos or only .npy files (other files "
                       "are ignored); --sources and --targets may be of different kinds")
    codes.add_argument("--targets", metavar="PHOTO|NPY|DIR", help="target faces, same forms as "
                       "--sources")
    codes.add_argument("--num-pairs", type=int, default=4, action=at_least(1),
                       help="random Z sources/targets to draw from --seed when --sources/--targets "
                            "are not given")
    codes.add_argument("--code-type", choices=("auto", "z", "w", "wplus"), default="auto",
                       help="how to read code files: auto = 3-D arrays are W+, 1-D/2-D are Z")
    codes.add_argument("--seed", type=int, default=0, help="seed of the random codes")
    p.add_argument("--truncation", type=float, default=0.7, action=in_range(0, 1),
                   help=TRUNCATION_HELP + "; applied to Z/W codes after mapping and row-wise to W+ "
                        "codes (as the official real-image path does for inverted codes)")
    p.add_argument("--mean-latent", metavar="NPY", default=None,
                   help="mean W for truncation (overrides the default mean)")
    p.add_argument("--pairs", choices=("zip", "all"), default="zip",
                   help="zip: source i with target i; all: every source with every target (a matrix)")
    p.add_argument("--batch-size", type=int, default=None, action=at_least(1),
                   help="pairs (or video frames) per jitted batch; default: 1 on a CPU (as fast "
                        "per pair as 8 there, with 1/7 of the memory: "
                        "benchmarks/results/redesign.md), 8 on a GPU or TPU")
    p.add_argument("--resize-256", action="store_true", help="average-pool images to 256x256 "
                   "(as StyleMask does before its losses)")
    p.add_argument("--save-arrays", action="store_true", help="also write float32 images (NHWC) "
                   "and the codes as .npy under OUT/arrays (for photos: source_codes/target_codes "
                   "are the inverted e4e codes, *_wplus the truncated ones)")
    p.add_argument("--outputs", choices=("all", "reenacted"), default="all",
                   help="all: synthesise source, target and reenacted images (grid.png, matrix.png, "
                        "pairs/); reenacted: only the reenacted images, one generator call per "
                        "batch instead of three, written to pairs/ (no grid.png or matrix.png)")
    photos = p.add_argument_group("photos and videos")
    photos.add_argument("--e4e", metavar="DIR", default=None, help="converted e4e encoder "
                        "(`stylemask convert e4e`): needed for photos and --driving. Photos are "
                        "truncated like the official real-image path (--truncation, row-wise)")
    photos.add_argument("--driving", metavar="CLIP", default=None, help="a driving video: "
                        "reenact the one --sources photo with every frame as the target; writes "
                        "OUT/reenacted.mp4 at the clip's frame rate with its audio (landmarks "
                        "smoothed over time; frames without a face reuse the last alignment)")
    photos.add_argument("--face", metavar="X,Y", default=None, action=FacePoint,
                        help="with --driving: follow the face at this pixel of the clip's first "
                             "frame with a face (default: the largest face there); later frames "
                             "keep that face, never a larger one elsewhere")
    photos.add_argument("--save-track", action="store_true", help="with --driving: write "
                        f"OUT/{TRACK_NAME}, one row per frame: status (detected, carried, "
                        "filled), faces found, the chosen face box, the crop quad")
    photos.add_argument("--side-by-side", action="store_true", help="with --driving: each frame "
                        "is the driving frame, resized to the output's height (aspect kept), left "
                        "of the reenacted one")
    photos.add_argument("--paste-back", action="store_true", help="put the reenacted face back "
                        "into the source photo (feathered edge): OUT/pasted/ for photos, the "
                        "source photo's size for --driving")
    photos.add_argument("--save-aligned", action="store_true", help="write the aligned 256 crops "
                        "to OUT/aligned/sources/ and OUT/aligned/targets/")
    add_refine_arguments(photos)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_overwrite_argument(p)


def input_kinds(args) -> dict:
    """The photo/video rules of the arguments, checked before any model loads ->
    {'source': (kind, files) or None, 'target': ...}, kind 'photos' or 'codes'."""
    if args.driving and not args.sources:
        raise UserInputError("--driving needs --sources PHOTO (the face the video animates)")
    if args.driving and args.targets:
        raise UserInputError("--driving replaces --targets (each frame is a target); give one")
    for flag, given in (("--side-by-side", args.side_by_side), ("--face", args.face),
                        ("--save-track", args.save_track)):
        if given and not args.driving:
            raise UserInputError(f"{flag} is for --driving videos")
    kinds = {role: pipeline.input_files(path, f"--{role}s") if path else None
             for role, path in (("source", args.sources), ("target", args.targets))}
    photos = [role for role, kind in kinds.items() if kind and kind[0] == "photos"]
    if args.driving and (kinds["source"][0] != "photos" or len(kinds["source"][1]) != 1):
        raise UserInputError(f"--sources {args.sources}: --driving animates one source photo; "
                             "give one photo file")
    if (photos or args.driving) and not (args.e4e or args.config):
        raise UserInputError("photos and --driving videos are inverted with e4e: give --e4e DIR "
                             "(`stylemask convert e4e`), or --config tiny for random networks")
    if args.paste_back and "source" not in photos:
        raise UserInputError("--paste-back puts faces back into the source photos: give photos "
                             "as --sources")
    if args.save_aligned and not photos:
        raise UserInputError("--save-aligned writes the aligned crops of photos: none were given")
    if (args.refine_steps or args.irse) and not (photos or args.driving):
        raise UserInputError("--refine-steps/--irse refine the inversion of photos: none were given")
    if args.e4e and not (photos or args.driving):
        raise UserInputError("--e4e is for photos and videos; --sources/--targets are codes")
    if args.irse and not args.refine_steps:
        raise UserInputError("--irse is used only by the refinement: give --refine-steps N too")
    return kinds


def models_and_inverter(args, photos: bool):
    """(inference.Models, the e4e inverter or None): converted weights, or with --config the
    config's random weights. With photos or --driving and --config, the demo's random networks
    that fit together (`demo.tiny`: a style_dim-512 generator and a small e4e)."""
    if args.config is None:
        if not (args.generator and args.mask_net):
            raise UserInputError("give --generator DIR and --mask-net DIR (converted weights), "
                                 "or --config tiny for random weights")
        models = load_models(args.generator, args.mask_net)
        return models, load_inverter(args, models.generator) if photos else None
    if args.generator or args.mask_net or args.e4e:
        raise UserInputError("--config gives random weights; do not combine it with "
                             "--generator/--mask-net/--e4e")
    if not photos:
        return inference.tiny_models(named_config(args.config), seed=args.seed), None
    return tiny_photo_networks(args, seed=args.seed)


def check_face_point(face: tuple[float, float], size: tuple[int, int]) -> None:
    """--face must lie inside the clip's (width, height) frames."""
    width, height = size
    if not (0 <= face[0] < width and 0 <= face[1] < height):
        raise UserInputError(f"--face {face[0]:g},{face[1]:g}: outside the video's "
                             f"{width}x{height} frames")


def default_batch_size() -> int:
    """The --batch-size default of the backend in use."""
    return 1 if jax.default_backend() == "cpu" else 8


def run(args) -> None:
    kinds = input_kinds(args)
    if args.save_aligned:  # the crops are named after the photos: names must be unique
        for role, _ in ROLES:
            if kinds[role] and kinds[role][0] == "photos":
                with naming(f"--{role}s:"):
                    inversion.output_names(kinds[role][1])
    check_new_output(args.out, "--out", args.overwrite)
    if args.driving:
        with naming("--driving"):
            clip = video.probe_video(args.driving)
        if args.face:
            check_face_point(args.face, clip.size)
    faces = {role: pipeline.prepare_faces(kinds[role][1], keep_photos=args.paste_back
                                          and role == "source")
             for role, _ in ROLES if kinds[role] and kinds[role][0] == "photos" and not args.driving}
    photos = bool(faces) or bool(args.driving)
    status("loading the networks ...")
    models, inverter = models_and_inverter(args, photos)
    gen = models.generator
    args.batch_size = args.batch_size or default_batch_size()
    status(f"compiling for batches of {args.batch_size} (the first run only: compiled code is "
           "cached) ...")
    if args.mean_latent:
        with naming("--mean-latent"):
            mean = codes_lib.load_mean_latent(args.mean_latent, gen.style_dim)
    else:
        mean = inference.truncation_mean(models)
    if args.driving:
        clear_output(args.out, args.overwrite)
        print(reenact_video(args, models, inverter, kinds["source"][1][0], mean))
        return
    loaded = {}
    for role, offset in ROLES:
        if role in faces:
            loaded[role] = (inversion.invert_all(inverter, models.gvars, faces[role].crops,
                                                 args.batch_size), "wplus")
        elif kinds[role]:
            loaded[role] = codes_lib.load_codes(getattr(args, f"{role}s"), args.code_type,
                                                gen.style_dim, gen.n_latent, f"--{role}s")
        else:
            z = codes_lib.seed_codes(args.seed, 2 * args.num_pairs, gen.style_dim)
            loaded[role] = (z[offset::2], "z")
    num_sources, num_targets = len(loaded["source"][0]), len(loaded["target"][0])
    if args.pairs == "zip" and num_sources != num_targets:
        raise UserInputError(f"--pairs zip needs as many sources as targets, got {num_sources} "
                             f"sources and {num_targets} targets (use --pairs all for a matrix)")
    wplus = {role: inference.encode_codes(models, codes, kind, args.truncation, mean,
                                          args.batch_size)
             for role, (codes, kind) in loaded.items()}
    result = inference.reenact_codes(models, wplus["source"], wplus["target"], args.pairs,
                                     args.batch_size, args.resize_256, outputs=args.outputs)
    arrays = None
    if args.save_arrays:
        arrays = {"source_codes": loaded["source"][0], "target_codes": loaded["target"][0],
                  "source_wplus": wplus["source"], "target_wplus": wplus["target"],
                  "truncation_latent": mean}
    clear_output(args.out, args.overwrite)
    with outputs.removed_on_failure(args.out):
        summary = inference.write_reenactment(args.out, result, args.pairs, arrays)
        print(summary + inference.write_photo_outputs(args.out, faces, result, args.save_aligned,
                                                      args.paste_back))


def reenact_video(args, models, inverter, source: str, mean) -> str:
    """OUT/reenacted.mp4 of --sources PHOTO driven by --driving CLIP -> the summary line."""
    track = os.path.join(args.out, TRACK_NAME) if args.save_track else None
    result = driving_lib.reenact_video(models, inverter, source, args.driving, args.out,
                                       truncation=args.truncation, mean=mean,
                                       batch_size=args.batch_size, paste_back=args.paste_back,
                                       side_by_side_view=args.side_by_side, face=args.face,
                                       track_path=track)
    st = result.stats
    return (f"wrote {result.path} ({st['frames']} frames, {result.size[0]}x{result.size[1]} at "
            f"{result.fps:g} fps): face found in {st['detected']}, {st['carried']} carried "
            f"(no face: the last alignment reused), {st['filled']} filled (before the first face), "
            f"{st['resets']} smoother resets" + (f", {st['reacquired']} reacquired"
                                                 if st.get("reacquired") else "")
            + (f"; track in {track}" if track else ""))
