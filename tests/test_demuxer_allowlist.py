"""Only an explicit list of FFmpeg demuxers may read a source (activities/media.py ALLOWED_DEMUXERS).

Every demuxer of this FFmpeg build that opens other files on its own (image sequences and
patterns, ffconcat lists, playlists and manifests, MOV data references, VobSub, MLV chunks,
session descriptions, devices) is tried here as a local file inside an allowed root and
served over HTTP from 127.0.0.1. The file it would open lies outside the root and is a
FIFO (an open of it is seen by the watcher, as the writer's non-blocking open succeeds), or
is served by the HTTP server, which records each request. A control shows that FFmpeg
left to itself does open it: each case is a real way out, closed by the allow-list.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import os
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import av
import imageio_ffmpeg
import pytest

from activities import opening as media_module
from activities.errors import UnreadableSourceError
from activities.decode import probe
from activities.opening import ALLOWED_DEMUXERS, FILE_OPENING_DEMUXERS
from activities.policy import SourceRefusedError
from vqa.contracts import StreamReport

from .conftest import TemporalServer, run_async, run_starter, running_worker
from .test_source_policy import Server, _default_policy, servers  # noqa: F401 - fixtures


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, capture_output=True, timeout=120)


def _demuxers() -> dict[str, str]:
    """Every demuxer of this FFmpeg build: each of its names -> its full name (mov -> mov,mp4,...)."""
    found: dict[str, str] = {}
    for name in av.formats_available:
        try:
            fmt = av.ContainerFormat(name, "r")
        except (ValueError, av.error.FFmpegError):
            continue
        if fmt.is_input:
            for part in fmt.name.split(","):
                found[part] = fmt.name
    return found


DEMUXERS = _demuxers()


# -- the outside file: a FIFO that tells whether anything opened it --------------------------


@contextmanager
def fifo(path: Path) -> Iterator[Callable[[], bool]]:
    """A FIFO at `path`; yields `opened()`: whether a reader has opened it since."""
    os.mkfifo(path)
    opened, stop = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no reader has it open
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                stop.wait(0.002)
                continue
            opened.set()
            os.close(fd)  # the reader reads end of file, and goes on
            stop.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def was_opened() -> bool:
        time.sleep(0.1)
        return opened.is_set()

    try:
        yield was_opened
    finally:
        stop.set()
        watcher.join(5)


def _ffmpeg_alone(url: str, **options: str) -> None:
    """FFmpeg with no allow-list (the control): open `url` and read a little, errors ignored."""

    def run() -> None:
        try:
            with av.open(url, options=options, timeout=5) as container:
                for _ in zip(range(50), container.demux()):
                    pass
        except (av.error.FFmpegError, OSError, UnicodeDecodeError):
            pass

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(run).result(timeout=30)


# -- the ways out ------------------------------------------------------------------------------


def _png() -> bytes:
    picture = Path(os.environ.get("TMPDIR", "/tmp")) / f"vqa-outside-{os.getpid()}.png"
    if not picture.exists():
        _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(picture))
    return picture.read_bytes()


def _mp4_with_data_reference(path: Path, referenced: str, *, levels_up: int) -> Path:
    """An MP4 whose video track's data lies in another file: its dref box holds a QuickTime
    alias ('alis') to `referenced`, `levels_up` directories above the MP4's (FFmpeg's
    mov demuxer opens it when enable_drefs is set)."""
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1", "-c:v", "mpeg4", str(path))
    data = path.read_bytes()
    path_record = b"/volume/dir/" + referenced.encode()
    path_record += b"\0" * (len(path_record) % 2)
    alias = (
        bytes(10) + bytes([6]) + b"volume".ljust(27, b"\0") + bytes(12)
        + bytes([len(referenced)]) + referenced.encode().ljust(63, b"\0") + bytes(16)
        + struct.pack(">hh", levels_up + 1, 1) + bytes(16)
        + struct.pack(">hh", 2, len(path_record)) + path_record + struct.pack(">hh", -1, 0)
    )
    entry = struct.pack(">I4sI", 12 + len(alias), b"alis", 0) + alias
    dref = struct.pack(">I4sII", 16 + len(entry), b"dref", 0, 1) + entry

    def rewrite(buf: bytes, start: int, end: int) -> bytes:
        out, pos = b"", start
        while pos < end:
            size, kind = struct.unpack(">I4s", buf[pos : pos + 8])
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"dinf"):
                body = rewrite(buf, pos + 8, pos + size)
                out += struct.pack(">I4s", 8 + len(body), kind) + body
            elif kind == b"dref":
                out += dref
            else:
                out += buf[pos : pos + size]
            pos += size
        return out

    assert data.index(b"moov") > data.index(b"mdat"), "the index follows the media: chunk offsets keep"
    path.write_bytes(rewrite(data, 0, len(data)))
    return path


def _mlv_header() -> bytes:
    """A Magic Lantern Video file's MLVI block, no frames: the demuxer then scans NAME.M00 to .M99."""
    return b"MLVI" + struct.pack("<I", 52) + b"v2.0\0\0\0\0" + struct.pack("<Q", 7) + bytes(8) + bytes(4) + bytes(8) + struct.pack("<II", 25, 1)


@dataclass(frozen=True)
class WayOut:
    """A source that makes a demuxer open `sibling`, a file beside it (a symlink to the outside file
    locally, a path on the same server over HTTP)."""

    demuxer: str  # the demuxer that would open the sibling; "" where this build has none
    name: str  # the source's file name
    body: Callable[[], bytes]
    siblings: tuple[str, ...]
    control: dict[str, str]  # the options with which FFmpeg alone opens a sibling
    refusal: str  # in the message, where FFmpeg picks `demuxer`
    picked: bool = True  # FFmpeg picks `demuxer` for this name and content (else it finds no format)
    content_type: str = "video/mp4"  # served with it too
    typed_picked: bool | None = None  # FFmpeg picks `demuxer` with that Content-Type; None: as `picked`


_HLS = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\nsegment.ts\n#EXT-X-ENDLIST\n"
_MPD = b"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000" codecs="avc1.64001e">
  <BaseURL>segment.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>
"""
_CPL = b"""<?xml version="1.0" encoding="UTF-8"?>
<CompositionPlaylist xmlns="http://www.smpte-ra.org/schemas/2067-3/2016">
 <Id>urn:uuid:8e097bb0-cff7-4969-a692-bad47bfb528f</Id><EditRate>24 1</EditRate>
 <SegmentList><Segment><Id>urn:uuid:1</Id><SequenceList><MainImageSequence>
  <ResourceList><Resource><TrackFileId>urn:uuid:2</TrackFileId><EditRate>24 1</EditRate>
  <IntrinsicDuration>24</IntrinsicDuration></Resource></ResourceList>
 </MainImageSequence></SequenceList></Segment></SegmentList></CompositionPlaylist>
"""
_SDP = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
_VOBSUB = (b"# VobSub index file, v7 (do not modify this line!)\nsize: 720x576\npalette: " + b", ".join([b"000000"] * 16)
           + b"\nid: en, index: 0\ntimestamp: 00:00:00:000, filepos: 000000000\n")

WAYS_OUT = [
    WayOut("image2", "img%d.png", _png, tuple(f"img{i}.png" for i in range(100)), {}, "image2 (image sequence / pattern)"),
    WayOut("image2", "img*.png", _png, ("img0.png", "img1.png"), {"pattern_type": "glob"}, "image2 (image sequence / pattern)"),
    WayOut("image2", "img?.png", _png, ("img0.png", "img1.png"), {"pattern_type": "glob"}, "image2 (image sequence / pattern)"),
    WayOut("concat", "list.mp4", lambda: b"ffconcat version 1.0\nfile segment.mp4\n", ("segment.mp4",), {}, "concat (ffconcat list)"),
    WayOut("hls", "live.m3u", lambda: _HLS, ("segment.ts",), {}, "hls (HLS playlist)"),
    # FFmpeg's HLS reader wants an .m3u8/.m3u name or an HLS Content-Type; .m3u8 sources are read by hls.py
    WayOut("hls", "live.mp4", lambda: _HLS, ("segment.ts",), {}, "hls (HLS playlist)", picked=False,
           content_type="application/vnd.apple.mpegurl", typed_picked=True),
    WayOut("dash", "manifest.mp4", lambda: _MPD, ("segment.mp4",), {}, "not a readable media file"),
    WayOut("imf", "cpl.mp4", lambda: _CPL, ("ASSETMAP.xml", "ASSETMAP"), {}, "not a readable media file"),
    WayOut("sdp", "session.mp4", lambda: _SDP, (), {}, "sdp (SDP session description)"),
    WayOut("vobsub", "subtitles.idx", lambda: _VOBSUB, ("subtitles.sub",), {}, "vobsub (VobSub index"),
    WayOut("mlv", "clip.MLV", _mlv_header, ("clip.M00", "clip.M01"), {}, "mlv (Magic Lantern video"),
]


def _way_id(way: WayOut) -> str:
    return f"{way.demuxer}:{way.name}"


def _refused(source: str, *expected: str) -> str:
    began = time.monotonic()
    with pytest.raises(UnreadableSourceError) as err:
        probe(source)
    assert time.monotonic() - began < 5.0, "refused at once, nothing waited for"
    message = str(err.value)
    for part in expected:
        assert part in message, message
    return message


@pytest.mark.parametrize("way", WAYS_OUT, ids=_way_id)
def test_a_file_opening_demuxer_opens_nothing_from_a_local_file(way: WayOut, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", str(root))
    source = root / way.name
    source.write_bytes(way.body())
    with fifo(tmp_path / "outside") as opened:
        for sibling in way.siblings:
            (root / sibling).symlink_to(tmp_path / "outside")
        picked = way.picked and way.demuxer in DEMUXERS
        message = _refused(str(source), "not a readable media file", *([way.refusal] if picked else []))
        assert not opened(), f"{message}: yet the file outside the root was opened"
        if picked:
            assert "which VQA does not read: it would open other files" in message
            if way.siblings:
                _ffmpeg_alone(str(source), **way.control)
                assert opened(), "control: FFmpeg alone opens the file outside the root"


@pytest.mark.parametrize("way", WAYS_OUT, ids=_way_id)
def test_a_file_opening_demuxer_fetches_nothing_over_http(way: WayOut, servers: Callable[[], Server]) -> None:  # noqa: F811
    server = servers()
    for sibling in way.siblings:
        server.serve(f"/media/{sibling}", _png())
    plain = server.serve(f"/media/{way.name}", way.body())
    typed = server.serve(f"/typed/{way.name}", way.body(), **{"Content-Type": way.content_type})
    picked_typed = way.picked if way.typed_picked is None else way.typed_picked
    for url, picked in ((plain, way.picked), (typed, picked_typed)):
        picked = picked and way.demuxer in DEMUXERS
        _refused(url, "not a readable media file", *([way.refusal, "it would open other files"] if picked else []))
    fetched = [hit for hit in server.hits if not unquote(hit).endswith(way.name)]
    assert fetched == [], f"only the source itself was read, not {fetched}"
    if way.siblings and picked_typed and way.demuxer in DEMUXERS and way.control.get("pattern_type") != "glob":
        _ffmpeg_alone(typed if way.typed_picked else plain, **way.control)  # (globs are for local files only)
        assert [hit for hit in server.hits if not unquote(hit).endswith(way.name)], "control: FFmpeg alone fetches a sibling"


@pytest.mark.parametrize("over_http", [False, True], ids=["local", "http"])
def test_mp4_data_references_are_not_followed(over_http: bool, tmp_path: Path, servers: Callable[[], Server], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """An MP4 whose track data is in another file (a 'dref' alias one directory above it): the
    mov demuxer is allowed, with enable_drefs=0 and use_absolute_path=0."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", str(root))
    clip = _mp4_with_data_reference(root / "reference.mp4", "outside", levels_up=1)
    with fifo(tmp_path / "outside") as opened:
        if over_http:
            server = servers()
            source = server.serve("/media/reference.mp4", clip.read_bytes())
            server.serve("/outside", _png())
        else:
            source = str(clip)
        try:
            probe(source)
        except UnreadableSourceError:
            pass  # a track without its data: unreadable, or (an audio track beside it) left out
        if over_http:
            assert all("outside" not in hit for hit in server.hits), server.hits
            _ffmpeg_alone(source, enable_drefs="1")
            assert any("outside" in hit for hit in server.hits), "control: FFmpeg alone follows the reference"
        else:
            assert not opened(), "the file the data reference names was opened"
            _ffmpeg_alone(source, enable_drefs="1")
            assert opened(), "control: FFmpeg alone follows the reference out of the root"
    assert media_module._NO_OTHER_FILES == {"enable_drefs": "0", "use_absolute_path": "0"}


@pytest.mark.parametrize("source", ["rtsp://127.0.0.1:1/live", "rtp://127.0.0.1:5004", "udp://127.0.0.1:5004",
                                    "sap://127.0.0.1", "tcp://127.0.0.1:1", "pipe:0", "fd:0", "concat:/a|/b",
                                    "subfile,,start,0,end,0,,:/etc/passwd", "data:video/mp4;base64,AAAA", "lavfi:testsrc"])
def test_network_session_and_pseudo_protocol_sources_are_refused(source: str) -> None:
    """RTSP/RTP/SAP sessions and FFmpeg's pseudo-protocols are never handed to FFmpeg."""
    with pytest.raises((UnreadableSourceError, SourceRefusedError)):
        probe(source)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_not_read(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", "/dev")
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    _refused(device)


def test_capture_devices_are_refused_by_name() -> None:
    """/dev/video* is probed by its name alone (FFmpeg picks video4linux2 without reading it)."""
    name = media_module._refused_format("", "/dev/video0")
    assert name is not None and "v4l2" in name[0].split(","), name
    message = media_module._refusal("/dev/video0", name)
    assert "capture device" in message and "would open other files" in message


# -- S3: a custom IO, so probed by its bytes only ------------------------------------------------


_BY_CONTENT = ("concat", "sdp", "vobsub", "mlv")  # the demuxers FFmpeg picks by the bytes alone


@pytest.mark.parametrize("way", [w for w in WAYS_OUT if w.demuxer != "image2"], ids=_way_id)
def test_a_file_opening_demuxer_is_refused_from_s3(way: WayOut, s3_env) -> None:  # type: ignore[no-untyped-def]
    """An S3 object is read through a Python file-like object (ranged GETs): FFmpeg probes its
    bytes only (no name-only demuxer such as image2), under the same format_whitelist."""
    bucket = f"allowlist-{os.urandom(4).hex()}"
    client = s3_env.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=f"media/{way.name}", Body=way.body())
    named = way.demuxer in _BY_CONTENT and way.demuxer in DEMUXERS
    _refused(f"s3://{bucket}/media/{way.name}", "not a readable media file", *([way.refusal] if named else []))


# -- end to end: the reported reproduction -------------------------------------------------------


@pytest.mark.integration
def test_an_image_pattern_with_siblings_outside_the_root_fails_its_stream(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    _results_in_a_temporary_directory: Path,
) -> None:
    """ROOT/img%d.png beside img0.png..img99.png, symlinks to a picture outside the root: the
    stream fails with a clear message, and no evidence of the outside picture is made."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    picture = outside / "secret.png"
    picture.write_bytes(_png())
    (root / "img%d.png").write_bytes(picture.read_bytes())
    for i in range(100):
        (root / f"img{i}.png").symlink_to(picture)
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", str(root))  # the in-process worker's environment
    stream_id = f"pattern-{os.urandom(4).hex()}"
    before = {p for p in _results_in_a_temporary_directory.rglob("*") if p.suffix in (".jpg", ".jpeg")}

    async def scenario() -> object:
        async with running_worker(temporal_server, task_queue):
            return await asyncio.to_thread(
                run_starter, temporal_server, task_queue, str(root / "img%d.png"), "--wait", "--json",
                "--stream-id", stream_id,
            )

    done = run_async(scenario())
    assert done.returncode == 1, (done.stdout, done.stderr)
    report = StreamReport.model_validate(json.loads(done.stdout))
    assert report.status == "failed" and report.error is not None
    assert "image2 (image sequence / pattern) input, which VQA does not read: it would open other files" in report.error
    assert report.defects == [] and report.windows == 0
    assert done.stderr.strip().splitlines()[-1] == f"error: {report.error}"
    after = {p for p in _results_in_a_temporary_directory.rglob("*") if p.suffix in (".jpg", ".jpeg")}
    assert after == before, "no evidence picture was made"


# -- what the allow-list lets through ---------------------------------------------------------


SUPPORTED = {
    "mp4": ("-c:v", "libx264", "-c:a", "aac"),
    "mov": ("-c:v", "libx264", "-c:a", "aac"),
    "m4a": ("-vn", "-c:a", "aac"),
    "mkv": ("-c:v", "libx264", "-c:a", "aac"),
    "webm": ("-c:v", "libvpx", "-c:a", "libopus"),
    "ts": ("-c:v", "libx264", "-c:a", "aac"),
    "mpg": ("-c:v", "mpeg2video", "-c:a", "mp2"),
    "avi": ("-c:v", "mpeg4", "-c:a", "libmp3lame"),
    "flv": ("-c:v", "libx264", "-c:a", "aac"),
    "mxf": ("-c:v", "mpeg2video", "-c:a", "pcm_s16le", "-ar", "48000"),
    "nut": ("-c:v", "mpeg4", "-c:a", "pcm_s16le"),
    "y4m": ("-an", "-c:v", "rawvideo", "-pix_fmt", "yuv420p"),
    "ivf": ("-an", "-c:v", "libvpx"),
    "wav": ("-vn", "-c:a", "pcm_s16le"),
    "mp3": ("-vn", "-c:a", "libmp3lame"),
    "flac": ("-vn", "-c:a", "flac"),
    "ogg": ("-vn", "-c:a", "libopus"),
    "aac": ("-vn", "-c:a", "aac"),
    "ac3": ("-vn", "-c:a", "ac3"),
}


@pytest.fixture(scope="module")
def supported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("containers")
    made = {}
    for suffix, codecs in SUPPORTED.items():
        path = directory / f"clip.{suffix}"
        _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                "-t", "2", *codecs, str(path))
        made[suffix] = path
    return made


@pytest.mark.parametrize("suffix", list(SUPPORTED))
def test_the_allow_list_reads_every_supported_container(suffix: str, supported: dict[str, Path], servers: Callable[[], Server]) -> None:  # noqa: F811
    path = supported[suffix]
    for source in (str(path), servers().serve(f"/clip.{suffix}", path.read_bytes())):
        info = probe(source)
        assert info.duration_s == pytest.approx(2.0, abs=0.3), (source, info)
        assert (info.video is not None) == ("-an" in SUPPORTED[suffix] or "-vn" not in SUPPORTED[suffix])


# -- the list itself -----------------------------------------------------------------------------

# Demuxers that read their own input only, each checked against FFmpeg's source (no io_open,
# no avformat_open_input, no avio_open of another name): what ALLOWED_DEMUXERS may hold.
KNOWN_SELF_CONTAINED = frozenset({
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mpegts", "mpeg", "avi", "flv", "live_flv",
    "mxf", "asf", "nut", "dv", "gxf", "rm", "ogg", "wtv", "h264", "hevc", "vvc", "mpegvideo", "m4v", "h263",
    "vc1", "dirac", "av1", "obu", "ivf", "yuv4mpegpipe", "mjpeg", "mpjpeg", "wav", "w64", "aiff", "caf", "au",
    "mp3", "flac", "aac", "loas", "ac3", "eac3", "dts", "dtshd", "truehd", "mlp", "amr", "wv", "ape", "tta",
    "tak", "mpc", "mpc8",
})
# The demuxers of this build that open other files, URLs or devices (each tried above, or
# reachable only by a scheme VQA refuses, or only when forced by name, which VQA never does).
KNOWN_FILE_OPENING = frozenset({
    "image2", "concat", "hls", "applehttp", "dash", "imf", "sdp", "rtsp", "rtp", "sap", "lavfi", "mlv",
    "vobsub", "video4linux2", "v4l2", "alsa", "oss", "fbdev", "kmsgrab", "x11grab",
})


def test_every_allowed_demuxer_is_known_not_to_open_other_files() -> None:
    assert ALLOWED_DEMUXERS <= KNOWN_SELF_CONTAINED, sorted(ALLOWED_DEMUXERS - KNOWN_SELF_CONTAINED)
    assert not ALLOWED_DEMUXERS & KNOWN_FILE_OPENING
    assert set(FILE_OPENING_DEMUXERS) == KNOWN_FILE_OPENING, "each file-opening demuxer's refusal is worded"
    unknown = sorted(name for name in ALLOWED_DEMUXERS if name not in DEMUXERS)
    assert unknown == [], f"allowed names this FFmpeg has no demuxer for (a typo?): {unknown}"


def test_every_other_demuxer_of_this_build_is_refused() -> None:
    """Walks this build's demuxers: only those allowed by name get through FFmpeg's format_whitelist
    (a newly built FFmpeg's extra demuxers are refused until listed)."""
    whitelist = media_module._FORMAT_WHITELIST.split(",")
    assert sorted(whitelist) == sorted(ALLOWED_DEMUXERS), "the whitelist is the explicit list, not the build's"
    through = {full for full in DEMUXERS.values() if set(full.split(",")) & set(whitelist)}
    assert all(set(full.split(",")) & KNOWN_SELF_CONTAINED for full in through)
    opening_here = {name for name in DEMUXERS if name in KNOWN_FILE_OPENING}
    assert opening_here and not opening_here & {p for full in through for p in full.split(",")}
    assert len(through) < len(set(DEMUXERS.values())) / 4, "an allow-list, not the build less a few"
    for name in ("image2", "concat", "hls", "sdp", "rtsp", "rtp", "lavfi", "mlv", "vobsub", "image2pipe", "png_pipe"):
        assert name in DEMUXERS and name not in through, name


@pytest.mark.parametrize("body, suffix", [(b"1\n00:00:00,000 --> 00:00:01,000\nhello\n", ".srt"), (None, ".png")])
def test_the_refused_format_is_named_as_ffmpeg_probes_it(body: bytes | None, suffix: str, tmp_path: Path) -> None:
    """The message's format name is the one FFmpeg picks (these demuxers open nothing else)."""
    path = tmp_path / f"file{suffix}"
    path.write_bytes(body if body is not None else _png())
    with av.open(str(path)) as container:
        picked = container.format.name
    assert media_module._refused_format("", str(path)) is not None
    assert media_module._refused_format("", str(path))[0] == picked  # type: ignore[index]
    _refused(str(path), f"is a {picked} (", "which VQA does not read")
