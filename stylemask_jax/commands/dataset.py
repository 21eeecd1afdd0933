"""`stylemask dataset build`: every face of a folder of photos or videos into a TFDS dataset.

    stylemask dataset build faces/ --out data/ --frame-stride 5

Layouts: SRC/PHOTO.png (one identity each), SRC/ID/PHOTO.png, SRC/ID/VIDEO.mp4,
SRC/ID/VIDEO/FRAME.png. Re-running with the same source does nothing; frames without a face are
skipped and counted.
"""

from __future__ import annotations

from stylemask_jax.commands import library
from stylemask_jax.commands.args import (DefaultsHelpFormatter, at_least, at_least_zero, naming,
                                         plural)
from stylemask_jax.outputs import check_output_dir

datasets = library("stylemask_jax.datasets")
IN_PROCESS_FRAMES = 150     # = datasets.pipeline.IN_PROCESS_FRAMES (a test checks), without Beam


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build", help="align every face of a folder of photos or videos into a TFDS dataset",
        description="Aligns every face of SRC (the official FFHQ crop from dlib's 68 landmarks) "
                    "into a tensorflow-datasets dataset (array_record files, no TensorFlow "
                    "needed) under --out. Layouts: SRC/PHOTO.png (one identity each), "
                    "SRC/ID/PHOTO.png, SRC/ID/VIDEO.mp4, SRC/ID/VIDEO/FRAME.png. Re-running with "
                    "the same source does nothing; frames without a face are skipped and counted.",
        formatter_class=DefaultsHelpFormatter)
    build.add_argument("src", metavar="SRC", help="folder of photos or of videos grouped by identity")
    build.add_argument("--out", required=True, metavar="DATA_DIR", help="TFDS data_dir to write")
    build.add_argument("--frame-stride", type=int, default=1, action=at_least(1),
                       help="keep every n-th video frame")
    build.add_argument("--max-frames", type=int, default=0, action=at_least_zero("all"),
                       help="at most this many kept frames per video (0: all)")
    build.add_argument("--max-detect-side", type=int, default=None, action=at_least(1),
                       help="detect faces on a copy of at most this side (faster on large "
                            "frames, landmarks ~1 px less exact); default: the full frame")
    build.add_argument("--workers", type=int, default=None, action=at_least(1),
                       help="local worker processes that align the items (Apache Beam's "
                            "DirectRunner); sources of fewer than "
                            f"{IN_PROCESS_FRAMES} frames align in this process; "
                            "default: every core")
    build.add_argument("--beam-options", default="", metavar="OPTIONS",
                       help="Apache Beam pipeline options, given with '=', e.g. --beam-options="
                            "\"--runner=FlinkRunner --flink_master=HOST:8081\": run the "
                            "build on a cluster (SRC and --out must be paths every worker "
                            "sees; see docs/datasets.md)")
    build.add_argument("--overwrite", action="store_true",
                       help="rebuild when the source has changed since the last build")


def run(args) -> None:
    check_output_dir(args.out, "--out")
    if args.beam_options:
        with naming("--beam-options"):
            datasets.pipeline.parse_beam_options(args.beam_options)
    report = datasets.build_dataset(args.src, args.out, frame_stride=args.frame_stride,
                                    max_frames=args.max_frames, overwrite=args.overwrite,
                                    max_detect_side=args.max_detect_side, workers=args.workers,
                                    beam_options=args.beam_options)
    print(summary(report))


def summary(report) -> str:
    """The lines `stylemask dataset build` prints for a `datasets.BuildReport`."""
    meta = report.metadata
    if report.skipped:
        return f"already built: {report.path} ({report.num_examples} faces); nothing to do"
    lines = [f"wrote {plural(report.num_examples, 'face')} from {meta.get('num_items')} "
             f"photos/videos ({plural(meta.get('num_frames'), 'frame')} read) to {report.path}"]
    if report.items_reused:
        lines.append(f"resumed: {report.items_reused} of {meta.get('num_items')} photos/videos "
                     "were aligned by an earlier, unfinished build")
    if report.items_aligned:
        lines.append(f"aligned {report.items_aligned} photos/videos {report.runner}"
                     if report.runner.startswith("in ") else
                     f"aligned {report.items_aligned} photos/videos on {report.runner}")
    if meta.get("num_no_face"):
        listed = meta.get("no_face", [])
        more = meta["num_no_face"] - len(listed)
        lines.append(f"no face found in {plural(meta['num_no_face'], 'frame')}: {', '.join(listed[:10])}"
                     + (f" and {meta['num_no_face'] - 10} more" if meta["num_no_face"] > 10
                        else "") + (f" ({more} not listed in the metadata)" if more else ""))
    if meta.get("ignored_files"):
        lines.append(f"ignored {plural(len(meta['ignored_files']), 'file')}, neither photo nor "
                     f"video: {', '.join(meta['ignored_files'][:10])}")
    return "\n".join(lines)
